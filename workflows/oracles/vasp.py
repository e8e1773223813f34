"""VASP oracle: atomate2's Materials Project GGA(+U) double relaxation run through custodian.

Each candidate runs in its own subfolder of ``root_dir`` (named after its id), one after the
other, so a batch uses one allocation. atomate2's makers write MP-compatible inputs (PBE PAW,
MP's U values, 520 eV, ferromagnetic MAGMOM start; pymatgen picks Γ-centred meshes for
hexagonal cells); custodian runs the VASP command with the standard handlers and atomate2's
validators; the final task document becomes an entry and gets
MaterialsProject2020Compatibility applied. Every ionic step becomes a training frame.

A relaxation stopped by the walltime (custodian's WalltimeHandler writes a STOPCAR before the
SLURM limit) leaves a CONTCAR in the candidate's folder; relaxing the same id into the same
``root_dir`` again starts from that CONTCAR instead of the original structure.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from custodian.custodian import ErrorHandler
from custodian.vasp.handlers import (
    FrozenJobErrorHandler,
    NonConvergingErrorHandler,
    PositiveEnergyErrorHandler,
    PotimErrorHandler,
    StdErrHandler,
    UnconvergedErrorHandler,
    VaspErrorHandler,
)
from monty.io import zopen
from monty.json import jsanitize
from pydantic import Field
from pymatgen.core import Structure
from pymatgen.entries.compatibility import MaterialsProject2020Compatibility

from hullhunter.workflows.oracles.base import Oracle, ResultCallback, installed_version
from hullhunter.workflows.oracles.forcefield import ForceFieldOracle
from hullhunter.workflows.oracles.registry import (
    OracleContext,
    OraclePlugin,
    OracleSettings,
    register_oracle,
)
from hullhunter.workflows.oracles.result import OracleResult
from hullhunter.workflows.oracles.trajectory import Frame

HANDLERS: dict[str, type[ErrorHandler]] = {
    "VaspErrorHandler": VaspErrorHandler,
    "UnconvergedErrorHandler": UnconvergedErrorHandler,
    "NonConvergingErrorHandler": NonConvergingErrorHandler,
    "PotimErrorHandler": PotimErrorHandler,
    "PositiveEnergyErrorHandler": PositiveEnergyErrorHandler,
    "FrozenJobErrorHandler": FrozenJobErrorHandler,
    "StdErrHandler": StdErrHandler,
}
"""The standard handler set, by name; WalltimeHandler is added when SLURM gives a limit."""

WALLTIME_START_VARIABLE = "CUSTODIAN_WALLTIME_START"
WALLTIME_ERROR = "Walltime reached"  # what custodian's WalltimeHandler logs
WALLTIME_BUFFER_S = 300
"""Seconds before the SLURM limit at which custodian stops VASP (and no new candidate starts)."""

MAKERS = ("double_relax", "double_relax_static")
PRERELAXERS = (None, "chgnet")

CUSTODIAN_DEFAULTS = {"polling_time_step": 0.1, "monitor_freq": 1200}
"""Custodian notices a finished VASP run within 0.1 s (its stock 10 s adds ~5 s to every run,
which adds up over a batch of small cells; a poll is one cheap system call) and still runs
the monitors (frozen job, walltime...) every two minutes, well inside the walltime buffer."""


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


def slurm_remaining_seconds() -> int | None:
    """Seconds left in the current SLURM allocation, or None outside SLURM / no limit."""
    end_time = os.environ.get("SLURM_JOB_END_TIME")
    if end_time and end_time.isdigit():
        return int(end_time) - int(time.time())
    job_id = os.environ.get("SLURM_JOB_ID")
    if not job_id or shutil.which("squeue") is None:
        return None
    try:
        left = subprocess.run(
            ["squeue", "-h", "-j", job_id, "-o", "%L"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    except (subprocess.SubprocessError, OSError):
        return None
    return parse_slurm_time(left)


def parse_slurm_time(text: str) -> int | None:
    """SLURM's ``[days-]hours:minutes:seconds`` (or ``minutes:seconds``) in seconds."""
    match = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)", text.strip())
    if not match:
        return None
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def check_vasp_command(vasp_cmd: str) -> None:
    """Raise :class:`VaspNotFoundError` unless the command's programs can be run."""
    words = shlex.split(os.path.expandvars(vasp_cmd))
    programs = words[:1] + [w for w in words[1:] if Path(w).name.lower().startswith("vasp")]
    for program in programs:
        if shutil.which(program) is None:
            raise VaspNotFoundError(
                f"VASP command {vasp_cmd!r}: {program!r} is not an executable on PATH; "
                "set vasp_cmd (HULLHUNTER_VASP_CMD or vasp_cmd in the hullhunter config) "
                "to the command that runs vasp_std on this machine"
            )


def _handler(spec: str | ErrorHandler) -> ErrorHandler:
    if isinstance(spec, ErrorHandler):
        return spec
    if spec not in HANDLERS:
        raise ValueError(f"unknown custodian handler {spec!r}; choose from {', '.join(HANDLERS)}")
    return HANDLERS[spec]()


def _safe_folder_name(candidate_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", candidate_id) or "candidate"


def _latest_contcar(directory: Path) -> Structure | None:
    """The structure of the newest non-empty CONTCAR left in a candidate's folder."""
    contcars = [p for p in directory.glob("**/CONTCAR*") if p.stat().st_size > 0]
    for path in sorted(contcars, key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            return Structure.from_file(path)
        except (ValueError, IndexError, OSError):
            continue
    return None


def _custodian_corrections(run_dir: Path) -> list[dict[str, Any]]:
    """The corrections custodian logged in one VASP job folder, oldest first.

    Each is ``{"handler": class name, "errors": [...], "actions": [...], "run": folder}``.
    """
    corrections: list[dict[str, Any]] = []
    for log in sorted(run_dir.glob("custodian.json*")):
        with zopen(log, mode="rt", encoding="utf-8") as file:
            runs = json.load(file)
        for run in runs:
            for correction in run.get("corrections", []):
                handler = correction.get("handler")
                corrections.append(
                    {
                        "handler": handler.get("@class") if isinstance(handler, dict) else handler,
                        "errors": correction.get("errors", []),
                        "actions": correction.get("actions"),
                        "run": run_dir.name,
                    }
                )
    return jsanitize(corrections, strict=False, allow_bson=False)


def _stopped_by_walltime(corrections: list[dict[str, Any]]) -> bool:
    return any(WALLTIME_ERROR in correction["errors"] for correction in corrections)


def _frames(task_docs: Sequence[Any], candidate_id: str, correction_per_atom: float) -> list[Frame]:
    """Every ionic step of the VASP runs, in run order, as frames numbered from 0.

    Energies are VASP's σ→0 energies plus the final entry's MP2020 correction per atom, so
    they sit on the same scale as the result's energy and as CHGNet's. VASP writes stress
    in kBar with positive = compressive; frames use GPa with ASE's sign (positive =
    tensile), hence the factor -0.1.
    """
    frames: list[Frame] = []
    for doc in task_docs:
        for step in doc.calcs_reversed[0].output.ionic_steps:
            cell = step.structure
            frames.append(
                Frame(
                    structure=Structure(cell.lattice, cell.species, cell.frac_coords),
                    energy_per_atom=step.e_0_energy / len(cell) + correction_per_atom,
                    forces=np.array(step.forces, dtype=float),
                    stress=-0.1 * np.array(step.stress, dtype=float),
                    trajectory_id=candidate_id,
                    step=len(frames),
                )
            )
    return frames


class VaspOracle(Oracle):
    """MP-compatible VASP relaxations: atomate2's MP GGA makers run through custodian.

    Settings (all keywords of ``get_oracle("vasp", ...)``):

    ``vasp_cmd``, ``vasp_gamma_cmd``
        commands that run VASP's standard and Γ-only builds (e.g. ``"srun vasp_std"``);
        default: hullhunter's settings ``vasp_cmd`` / ``vasp_gamma_cmd``.
    ``max_errors``
        custodian's ``max_errors`` per VASP run; default: the setting ``vasp_max_errors``.
    ``handlers``
        custodian handler names (keys of :data:`HANDLERS`) or instances; default: all of
        :data:`HANDLERS`. A WalltimeHandler is added whenever there is a walltime.
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
        if prerelax not in PRERELAXERS:
            raise ValueError(
                f"unknown VASP prerelax {prerelax!r}; choose one of {PRERELAXERS} (None: off)"
            )
        site = _site_settings()
        self.vasp_cmd = vasp_cmd or site.get("vasp_cmd") or "vasp_std"
        self.vasp_gamma_cmd = vasp_gamma_cmd or site.get("vasp_gamma_cmd") or "vasp_gam"
        self.max_errors = int(max_errors or site.get("vasp_max_errors") or 5)
        self.handlers = [_handler(h) for h in (handlers or HANDLERS)]
        self.root_dir = Path(root_dir).resolve()
        self.maker = maker
        self.prerelax = prerelax
        self.prerelax_settings = dict(prerelax_settings or {})
        self._prerelaxer = (
            ForceFieldOracle(prerelax, **{"record_frames": False, **self.prerelax_settings})
            if prerelax
            else None
        )
        self.custodian_kwargs = {**CUSTODIAN_DEFAULTS, **(custodian_kwargs or {})}
        self.user_incar_settings = dict(user_incar_settings or {})
        self.wall_time_s = wall_time_s
        self.progress = progress
        self._compatibility = MaterialsProject2020Compatibility()
        self._batch_wall_time: int | None = None
        self._deadline: float | None = None

    @property
    def version(self) -> str:
        version = (
            f"atomate2 {installed_version('atomate2')} custodian {installed_version('custodian')} "
            f"MPGGA {self.maker}"
        )
        if self._prerelaxer is not None:
            version += f" after {self._prerelaxer.version} pre-relaxation"
        return version

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
        self._batch_wall_time = self.wall_time_s or slurm_remaining_seconds()
        if self._batch_wall_time is None:
            self._deadline = None
            return super().relax(structures, ids, on_result)
        self._deadline = time.monotonic() + self._batch_wall_time
        previous_start = os.environ.get(WALLTIME_START_VARIABLE)
        os.environ[WALLTIME_START_VARIABLE] = datetime.now().strftime("%a %b %d %H:%M:%S UTC %Y")
        try:
            return super().relax(structures, ids, on_result)
        finally:
            if previous_start is None:
                os.environ.pop(WALLTIME_START_VARIABLE, None)
            else:
                os.environ[WALLTIME_START_VARIABLE] = previous_start

    def _seconds_left(self) -> int | None:
        return None if self._deadline is None else int(self._deadline - time.monotonic())

    def _legs(self) -> list[tuple[str, Any]]:
        """atomate2's VASP job makers of the MP GGA flow, in run order, with our settings.

        They are the makers ``MPGGADoubleRelaxMaker`` (and ``MPGGADoubleRelaxStaticMaker``)
        are built from, so the input set generators and copy settings are atomate2's.
        """
        from atomate2.vasp.flows.mp import MPGGADoubleRelaxMaker, MPGGADoubleRelaxStaticMaker
        from atomate2.vasp.jobs.mp import MPGGARelaxMaker, MPGGAStaticMaker
        from atomate2.vasp.powerups import update_user_incar_settings

        run_vasp_kwargs = {
            "vasp_cmd": self.vasp_cmd,
            "vasp_gamma_cmd": self.vasp_gamma_cmd,
            "max_errors": self.max_errors,
            "handlers": self.handlers,
            "wall_time": self._batch_wall_time,
            "custodian_kwargs": self.custodian_kwargs,
        }
        common = {
            "run_vasp_kwargs": run_vasp_kwargs,
            # an unconverged run is reported as converged=False, not raised
            "stop_children_kwargs": {"handle_unsuccessful": False},
        }
        from_previous = {"additional_vasp_files": ("WAVECAR", "CHGCAR")}
        maker: Any = MPGGADoubleRelaxMaker(
            relax_maker1=MPGGARelaxMaker(**common),
            relax_maker2=MPGGARelaxMaker(copy_vasp_kwargs=from_previous, **common),
        )
        if self.maker == "double_relax_static":
            maker = MPGGADoubleRelaxStaticMaker(
                relax_maker=maker,
                static_maker=MPGGAStaticMaker(copy_vasp_kwargs=from_previous, **common),
            )
        if self.user_incar_settings:
            maker = update_user_incar_settings(maker, self.user_incar_settings)
        if self.maker == "double_relax_static":
            double = maker.relax_maker
            return [
                ("relax1", double.relax_maker1),
                ("relax2", double.relax_maker2),
                ("static", maker.static_maker),
            ]
        return [("relax1", maker.relax_maker1), ("relax2", maker.relax_maker2)]

    def _prerelaxed(self, structure: Structure, candidate_id: str) -> Structure:
        """The structure after the pre-relaxation (an unconverged one is used as it is).

        Through :meth:`ForceFieldOracle.relax`, which applies its ``threads`` setting.
        """
        (result,) = self._prerelaxer.relax([structure], [candidate_id])
        if result.structure is None:
            raise RuntimeError(f"{self.prerelax} pre-relaxation failed: {result.error}")
        return result.structure

    def relax_one(self, structure: Structure, candidate_id: str) -> OracleResult:
        """Run the flow's VASP jobs one after the other, each in its own job folder.

        Each job runs atomate2's own job body (copy the previous job's outputs, write the
        inputs, run custodian, parse the task document, gzip) called directly rather than
        through jobflow: a candidate's jobs are a fixed chain, and jobflow's output-schema
        checks and in-memory store cost about a second of CPU per calculation.
        """
        from monty.os import cd

        start = time.perf_counter()
        directory = self.root_dir / _safe_folder_name(candidate_id)
        seconds_left = self._seconds_left()
        if seconds_left is not None and seconds_left < 2 * WALLTIME_BUFFER_S:
            return OracleResult.failed(
                candidate_id,
                structure,
                f"not started: {seconds_left} s of walltime left; rerun the batch to continue",
                oracle=self.name,
                oracle_version=self.version,
                directory=str(directory),
            )
        current = _latest_contcar(directory) if directory.exists() else None
        if current is None and self._prerelaxer is not None:
            current = self._prerelaxed(structure, candidate_id)
        current = current or structure

        task_docs: list[Any] = []
        corrections: list[dict[str, Any]] = []
        problem = None
        previous_dir: Path | None = None
        try:
            for leg, maker in self._legs():
                job_dir = directory / f"job_{datetime.now():%Y-%m-%d-%H-%M-%S-%f}_{leg}"
                job_dir.mkdir(parents=True)
                try:
                    with cd(job_dir):
                        response = maker.make.original(maker, current, prev_dir=previous_dir)
                finally:
                    corrections += _custodian_corrections(job_dir)
                task_docs.append(response.output)
                if _stopped_by_walltime(corrections):
                    break
                current, previous_dir = response.output.output.structure, job_dir
        except Exception as exc:  # recorded below with the folder and corrections so far
            problem = f"{type(exc).__name__}: {exc}"
        if _stopped_by_walltime(corrections):
            # a run stopped by STOPCAR looks finished to pymatgen; it is not
            problem = "stopped by the walltime; rerun the batch to continue from its last CONTCAR"
        if problem is None:
            final = task_docs[-1]
            corrected = self._compatibility.process_entry(final.entry, inplace=False)
            if corrected is None:
                problem = (
                    "MaterialsProject2020Compatibility rejected the calculation "
                    f"(run type {final.entry.parameters.get('run_type')})"
                )
        if problem is not None:
            return OracleResult.failed(
                candidate_id,
                structure,
                problem,
                oracle=self.name,
                oracle_version=self.version,
                wall_time_s=time.perf_counter() - start,
                directory=str(directory),
                corrections=corrections,
            )
        relaxed = final.output.structure
        frames = _frames(task_docs, candidate_id, corrected.correction_per_atom)
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
            corrections=corrections,
            directory=str(directory),
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

    def oracle_kwargs(self, context: OracleContext) -> dict[str, Any]:
        context.run_dir.mkdir(parents=True, exist_ok=True)
        return {
            "root_dir": context.run_dir,
            "maker": self.vasp_maker,
            "prerelax": self.vasp_prerelax,
            "user_incar_settings": self.vasp_incar or None,
            "vasp_cmd": context.site.vasp_cmd,
            "vasp_gamma_cmd": context.site.vasp_gamma_cmd,
            "max_errors": context.site.vasp_max_errors,
        }


register_oracle(
    OraclePlugin(
        "vasp", VaspOracle, VaspSettings, requires="atomate2", site_settings=("vasp_cmd",)
    )
)
