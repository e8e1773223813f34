"""VASP oracle: atomate2's Materials Project GGA(+U) double relaxation run through custodian.

Each candidate runs in its own subfolder of ``root_dir`` (named after its id), one after the
other, so a batch uses one allocation. atomate2's makers write MP-compatible inputs (PBE PAW,
MP's U values, 520 eV, ferromagnetic MAGMOM start; pymatgen picks Γ-centred meshes for
hexagonal cells); custodian runs the VASP command with atomate2's default handlers (fresh
ones for every run) and validators; the final task document becomes an entry and gets
MaterialsProject2020Compatibility applied (a rejection quotes pymatgen's reason). Every ionic
step becomes a training frame, its energy repaired for VASP 5.x (:func:`.vasp_jobs.step_energy`).

A relaxation stopped by the walltime (custodian's WalltimeHandler writes a STOPCAR before the
SLURM limit) leaves a CONTCAR in the candidate's folder; relaxing the same id into the same
``root_dir`` again starts from that CONTCAR instead of the original structure.

This module owns the oracle: its settings, the batch's walltime, the pre-relaxation and the
MP2020-corrected result. Custodian's handlers and the walltime plumbing are in
:mod:`.vasp_custodian`; the atomate2 job chain and what it leaves are in :mod:`.vasp_jobs`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from custodian.custodian import ErrorHandler, ValidationError
from pydantic import Field, field_validator
from pymatgen.core import Structure
from pymatgen.entries.compatibility import CompatibilityError, MaterialsProject2020Compatibility
from pymatgen.entries.computed_entries import ComputedStructureEntry

from hullhunter.workflows.oracles.base import ResultCallback, installed_version
from hullhunter.workflows.oracles.dft import DftOracle, missing_program
from hullhunter.workflows.oracles.registry import (
    OracleContext,
    OraclePlugin,
    OracleSettings,
    register_oracle,
)
from hullhunter.workflows.oracles.result import OracleResult, failure_reason
from hullhunter.workflows.oracles.vasp_custodian import (
    CUSTODIAN_DEFAULTS,
    HANDLERS,
    custodian_handler,
    known_handler_names,
    walltime_started_now,
)
from hullhunter.workflows.oracles.vasp_jobs import (
    MAKERS,
    JobChain,
    Leg,
    latest_contcar,
    mp_gga_legs,
)


class VaspNotFoundError(RuntimeError):
    """The VASP command named by the settings cannot be run."""


def _site_settings() -> dict[str, Any]:
    """``vasp_cmd``, ``vasp_gamma_cmd`` and ``vasp_max_errors`` from hullhunter's settings."""
    try:
        from hullhunter.settings import get_settings
    except ImportError:
        return {}
    settings = get_settings()
    names = ("vasp_cmd", "vasp_gamma_cmd", "vasp_max_errors")
    return {name: getattr(settings, name) for name in names if hasattr(settings, name)}


def check_vasp_command(vasp_cmd: str) -> None:
    """Raise :class:`VaspNotFoundError` unless the command's programs can be run."""
    program = missing_program(vasp_cmd, "vasp")
    if program is not None:
        raise VaspNotFoundError(
            f"VASP command {vasp_cmd!r}: {program!r} is not an executable on PATH; "
            "set vasp_cmd (HULLHUNTER_VASP_CMD or vasp_cmd in the hullhunter config) "
            "to the command that runs vasp_std on this machine"
        )


class VaspOracle(DftOracle):
    """MP-compatible VASP relaxations: atomate2's MP GGA makers run through custodian.

    Settings (all keywords of ``get_oracle("vasp", ...)``):

    ``vasp_cmd``, ``vasp_gamma_cmd``
        commands that run VASP's standard and Γ-only builds (e.g. ``"srun vasp_std"``);
        default: hullhunter's settings ``vasp_cmd`` / ``vasp_gamma_cmd``.
    ``max_errors``
        custodian's ``max_errors`` per VASP run; default: the setting ``vasp_max_errors``.
    ``handlers``
        custodian handler names (keys of :data:`HANDLERS`) or instances; default: all of
        :data:`HANDLERS`, atomate2's default set in its order. A WalltimeHandler is added
        whenever there is a walltime. Every custodian run gets its own fresh copies.
    ``root_dir``
        folder under which each candidate gets its own run folder (named after its id).
    ``maker``
        ``"double_relax"`` (MPGGADoubleRelaxMaker) or ``"double_relax_static"``
        (MPGGADoubleRelaxStaticMaker: a static run after the two relaxations).
    ``prerelax``
        ``"chgnet"`` relaxes each candidate with the CHGNet oracle first and starts VASP
        from its structure, as atomate2's CHGNet-then-VASP flow does; None (default) does
        not. ``prerelax_settings`` go to that :class:`ForceFieldOracle` (fmax, max_steps,
        device, threads...). It shows in ``oracle_version``; the frames hold VASP steps only.
    ``custodian_kwargs``
        extra arguments for ``Custodian`` (default :data:`CUSTODIAN_DEFAULTS`).
    ``user_incar_settings``
        INCAR settings applied on top of MP's.
    ``wall_time_s``
        seconds this batch may run; default: what SLURM says is left, else no limit.
    ``progress``
        show a progress bar over the batch.

    Arguments win over hullhunter's settings, which win over atomate2's defaults.

    Results carry ``frames``: every ionic step of the final VASP run of each job, in order,
    numbered from 0, with MP2020-corrected energies (the same scale as the result's energy
    and as CHGNet's), forces in eV/Å and stress in GPa with ASE's sign.
    """

    name = "vasp"

    def __init__(
        self,
        *,
        vasp_cmd: str | None = None,
        vasp_gamma_cmd: str | None = None,
        max_errors: int | None = None,
        handlers: Sequence[str | ErrorHandler] | None = None,
        root_dir: str | Path = ".",
        maker: str = "double_relax",
        prerelax: str | None = None,
        prerelax_settings: dict[str, Any] | None = None,
        custodian_kwargs: dict[str, Any] | None = None,
        user_incar_settings: dict[str, Any] | None = None,
        wall_time_s: int | None = None,
        progress: bool = False,
    ) -> None:
        if maker not in MAKERS:
            raise ValueError(f"unknown VASP maker {maker!r}; choose one of {', '.join(MAKERS)}")
        super().__init__(
            root_dir=root_dir,
            prerelax=prerelax,
            prerelax_settings=prerelax_settings,
            wall_time_s=wall_time_s,
            progress=progress,
        )
        site = _site_settings()
        self.vasp_cmd = vasp_cmd or site.get("vasp_cmd") or "vasp_std"
        self.vasp_gamma_cmd = vasp_gamma_cmd or site.get("vasp_gamma_cmd") or "vasp_gam"
        self.max_errors = int(max_errors or site.get("vasp_max_errors") or 5)
        self.handlers = [custodian_handler(h) for h in (handlers or HANDLERS)]
        self.maker = maker
        self.custodian_kwargs = {**CUSTODIAN_DEFAULTS, **(custodian_kwargs or {})}
        self.user_incar_settings = dict(user_incar_settings or {})
        self._compatibility = MaterialsProject2020Compatibility()

    @property
    def version(self) -> str:
        return self.with_prerelaxation(
            f"atomate2 {installed_version('atomate2')} custodian {installed_version('custodian')} "
            f"MPGGA {self.maker}"
        )

    @property
    def known_elements(self) -> set[str]:
        """Elements with a POTCAR in MP's input set (CHGNet, the pre-relaxer, covers them all)."""
        from pymatgen.io.vasp.sets import MPRelaxSet

        return set(MPRelaxSet.CONFIG["POTCAR"])

    def relax(
        self,
        structures: Sequence[Structure],
        ids: Sequence[str],
        on_result: ResultCallback | None = None,
    ) -> list[OracleResult]:
        """Check the VASP command first (fail at once), then relax each candidate in turn.

        With a walltime (``wall_time_s`` or what SLURM reports left), every custodian run gets
        a WalltimeHandler counting from the batch's start: custodian keeps that start in
        ``CUSTODIAN_WALLTIME_START``, which is set here for the batch and restored after.
        """
        check_vasp_command(self.vasp_cmd)
        if self.start_batch() is None:
            return super().relax(structures, ids, on_result)
        with walltime_started_now():
            return super().relax(structures, ids, on_result)

    def _legs(self) -> list[Leg]:
        """atomate2's VASP job makers of the MP GGA flow, in run order, with our settings."""
        run_vasp_kwargs = {
            "vasp_cmd": self.vasp_cmd,
            "vasp_gamma_cmd": self.vasp_gamma_cmd,
            "max_errors": self.max_errors,
            "handlers": self.handlers,
            "wall_time": self._batch_wall_time,
            "custodian_kwargs": self.custodian_kwargs,
        }
        return mp_gga_legs(self.maker, run_vasp_kwargs, self.user_incar_settings)

    def _starting_structure(
        self, structure: Structure, candidate_id: str, directory: Path
    ) -> Structure:
        """The last CONTCAR a stopped run left in ``directory``, else the (pre-relaxed) input."""
        current = latest_contcar(directory) if directory.exists() else None
        return current or self.prerelaxed(structure, candidate_id)

    def relax_one(self, structure: Structure, candidate_id: str) -> OracleResult:
        """Run the flow's VASP jobs one after the other, each in its own job folder.

        See :meth:`JobChain.run`; any failure, a stop at the walltime included, is reported
        with the candidate's folder and the custodian corrections so far.
        """
        start = time.perf_counter()
        directory = self.candidate_folder(candidate_id)
        if (refused := self.not_started(candidate_id, structure)) is not None:
            return refused
        current = self._starting_structure(structure, candidate_id, directory)
        chain = JobChain(directory)
        problem = None
        try:
            chain.run(self._legs(), current)
        except ValidationError as exc:
            problem = (
                f"{exc}: VASP's output is missing, truncated or unreadable (killed mid-write?); "
                "rerun the candidate"
            )
        except Exception as exc:  # recorded below with the folder and corrections so far
            problem = failure_reason(exc)
        if chain.stopped_by_walltime:
            # a run stopped by STOPCAR looks finished to pymatgen; it is not
            problem = "stopped by the walltime; rerun the batch to continue from its last CONTCAR"
        if problem is None:
            try:
                return self._result(candidate_id, chain, start)
            except (CompatibilityError, ValueError) as exc:
                problem = str(exc)
        return self.failed_result(
            candidate_id,
            structure,
            problem,
            started=start,
            directory=str(directory),
            corrections=chain.corrections,
        )

    def _corrected(self, final: Any) -> ComputedStructureEntry:
        """The final task document's entry with MP2020 corrections; raises with pymatgen's
        reason when MP2020 rejects it (e.g. a POTCAR other than MP's)."""
        try:
            (corrected,) = self._compatibility.process_entries(
                final.entry, inplace=False, on_error="raise"
            )
        except (CompatibilityError, ValueError) as exc:
            raise CompatibilityError(
                "MaterialsProject2020Compatibility rejected the calculation "
                f"(run type {final.entry.parameters.get('run_type')}): {exc}"
            ) from exc
        return corrected

    def _result(self, candidate_id: str, chain: JobChain, start: float) -> OracleResult:
        """The successful result: the final job's structure, corrected energy and all frames.

        Raises when MP2020 rejects the run or a step's energy cannot be repaired.
        """
        final = chain.task_docs[-1]
        corrected = self._corrected(final)
        relaxed = final.output.structure
        frames = chain.frames(candidate_id, corrected.correction_per_atom)
        return OracleResult(
            candidate_id=candidate_id,
            formula=relaxed.composition.reduced_formula,
            energy_per_atom=corrected.energy_per_atom,
            energy=corrected.energy,
            structure=Structure(relaxed.lattice, relaxed.species, relaxed.frac_coords),
            # the last run decides: the first relaxation may stop at NSW, that is its job
            converged=str(final.state.value) == "successful",
            n_steps=len(frames),
            wall_time_s=time.perf_counter() - start,
            oracle=self.name,
            oracle_version=self.version,
            corrections=chain.corrections,
            directory=str(chain.directory),
            frames=frames,
        )


class VaspSettings(OracleSettings):
    """Campaign section of the VASP oracle: atomate2 maker, pre-relaxation, INCAR overrides."""

    vasp_maker: Literal["double_relax", "double_relax_static"] = "double_relax"
    vasp_prerelax: Literal["chgnet"] | None = Field(
        None, description="relax with CHGNet before VASP, as atomate2's CHGNet-then-VASP flow"
    )
    vasp_incar: dict[str, Any] = Field(
        default_factory=dict, description="INCAR overrides on top of the MP-compatible set"
    )
    vasp_handlers: list[str] | None = Field(
        None, description="custodian handlers by name, in order; default: atomate2's set"
    )

    @field_validator("vasp_handlers")
    @classmethod
    def _known_handlers(cls, names: list[str] | None) -> list[str] | None:
        return known_handler_names(names)

    def oracle_kwargs(self, context: OracleContext) -> dict[str, Any]:
        context.run_dir.mkdir(parents=True, exist_ok=True)
        return {
            "root_dir": context.run_dir,
            "maker": self.vasp_maker,
            "prerelax": self.vasp_prerelax,
            "user_incar_settings": self.vasp_incar or None,
            "handlers": self.vasp_handlers,
            "vasp_cmd": context.site.vasp_cmd,
            "vasp_gamma_cmd": context.site.vasp_gamma_cmd,
            "max_errors": context.site.vasp_max_errors,
        }


register_oracle(
    OraclePlugin("vasp", VaspOracle, VaspSettings, requires="atomate2", site_settings=("vasp_cmd",))
)
