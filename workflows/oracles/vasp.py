"""VASP oracle: atomate2's Materials Project GGA(+U) double relaxation run through custodian.

Each candidate runs in its own subfolder of ``root_dir`` (named after its id), one after the
other, so a batch uses one allocation. atomate2's makers write MP-compatible inputs (PBE PAW,
MP's U values, 520 eV, ferromagnetic MAGMOM start; pymatgen picks Γ-centred meshes for
hexagonal cells); custodian runs the VASP command with the standard handlers; the final task
document becomes an entry and gets MaterialsProject2020Compatibility applied.

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
from typing import Any

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
from pymatgen.core import Structure
from pymatgen.entries.compatibility import MaterialsProject2020Compatibility

from hullhunter.workflows.oracles.base import Oracle, ResultCallback, installed_version
from hullhunter.workflows.oracles.result import OracleResult

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


def _custodian_corrections(directory: Path, skip: set[Path]) -> list[dict[str, Any]]:
    """The corrections custodian logged in a candidate's run folders (not those in ``skip``).

    Each is ``{"handler": class name, "errors": [...], "actions": [...], "run": folder}``,
    oldest run first.
    """
    corrections: list[dict[str, Any]] = []
    logs = sorted(
        (log for log in directory.glob("*/custodian.json*") if log.parent not in skip),
        key=lambda p: p.stat().st_mtime,
    )
    for log in logs:
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
                        "run": log.parent.name,
                    }
                )
    return jsanitize(corrections, strict=False, allow_bson=False)


class VaspOracle(Oracle):
    """MP-compatible VASP relaxations through atomate2 and custodian.

    Arguments win over hullhunter's settings (``vasp_cmd``, ``vasp_gamma_cmd``,
    ``vasp_max_errors``), which win over atomate2's defaults. ``handlers`` are custodian
    handler names or instances. ``custodian_kwargs`` go to ``Custodian`` (for example a
    shorter ``polling_time_step``). ``user_incar_settings`` are applied on top of MP's.
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
        custodian_kwargs: dict[str, Any] | None = None,
        user_incar_settings: dict[str, Any] | None = None,
        wall_time_s: int | None = None,
        progress: bool = False,
    ) -> None:
        if maker not in MAKERS:
            raise ValueError(f"unknown VASP maker {maker!r}; choose one of {', '.join(MAKERS)}")
        site = _site_settings()
        self.vasp_cmd = vasp_cmd or site.get("vasp_cmd") or "vasp_std"
        self.vasp_gamma_cmd = vasp_gamma_cmd or site.get("vasp_gamma_cmd") or "vasp_gam"
        self.max_errors = int(max_errors or site.get("vasp_max_errors") or 5)
        self.handlers = [_handler(h) for h in (handlers or HANDLERS)]
        self.root_dir = Path(root_dir).resolve()
        self.maker = maker
        self.custodian_kwargs = {**CUSTODIAN_DEFAULTS, **(custodian_kwargs or {})}
        self.user_incar_settings = dict(user_incar_settings or {})
        self.wall_time_s = wall_time_s
        self.progress = progress
        self._compatibility = MaterialsProject2020Compatibility()
        self._batch_wall_time: int | None = None
        self._deadline: float | None = None

    @property
    def version(self) -> str:
        return (
            f"atomate2 {installed_version('atomate2')} custodian {installed_version('custodian')} "
            f"MPGGA {self.maker}"
        )

    @property
    def known_elements(self) -> set[str]:
        """Elements with a POTCAR in MP's input set."""
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

    def _flow(self, structure: Structure) -> Any:
        """atomate2's MP GGA flow for one structure, its VASP runs wired to our settings."""
        from atomate2.vasp.flows.mp import MPGGADoubleRelaxMaker, MPGGADoubleRelaxStaticMaker
        from atomate2.vasp.jobs.mp import MPGGARelaxMaker, MPGGAStaticMaker
        from atomate2.vasp.powerups import update_user_incar_settings

        common = {
            "run_vasp_kwargs": {
                "vasp_cmd": self.vasp_cmd,
                "vasp_gamma_cmd": self.vasp_gamma_cmd,
                "max_errors": self.max_errors,
                "handlers": self.handlers,
                "wall_time": self._batch_wall_time,
                "custodian_kwargs": self.custodian_kwargs,
            },
            # an unconverged run is reported as converged=False, not raised
            "stop_children_kwargs": {"handle_unsuccessful": False},
        }
        from_previous = {"additional_vasp_files": ("WAVECAR", "CHGCAR")}
        maker = MPGGADoubleRelaxMaker(
            relax_maker1=MPGGARelaxMaker(**common),
            relax_maker2=MPGGARelaxMaker(copy_vasp_kwargs=from_previous, **common),
        )
        if self.maker == "double_relax_static":
            maker = MPGGADoubleRelaxStaticMaker(
                relax_maker=maker,
                static_maker=MPGGAStaticMaker(copy_vasp_kwargs=from_previous, **common),
            )
        flow = maker.make(structure)
        if self.user_incar_settings:
            flow = update_user_incar_settings(flow, self.user_incar_settings)
        return flow

    def relax_one(self, structure: Structure, candidate_id: str) -> OracleResult:
        from jobflow import run_locally

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
        start_structure = _latest_contcar(directory) if directory.exists() else None
        directory.mkdir(parents=True, exist_ok=True)
        earlier_runs = set(directory.iterdir())

        flow = self._flow(start_structure or structure)
        problem = None
        try:
            responses = run_locally(
                flow, root_dir=directory, create_folders=True, log=False, raise_immediately=True
            )
        except Exception as exc:  # recorded below with the folder and corrections so far
            problem = f"{type(exc).__name__}: {exc}"
        corrections = _custodian_corrections(directory, skip=earlier_runs)
        if any(WALLTIME_ERROR in c["errors"] for c in corrections):
            # a run stopped by STOPCAR looks finished to pymatgen; it is not
            problem = "stopped by the walltime; rerun the batch to continue from its last CONTCAR"
        if problem is None:
            task_docs = [
                responses[job.uuid][max(responses[job.uuid])].output for job in _vasp_jobs(flow)
            ]
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
        return OracleResult(
            candidate_id=candidate_id,
            formula=relaxed.composition.reduced_formula,
            energy_per_atom=corrected.energy_per_atom,
            energy=corrected.energy,
            structure=Structure(relaxed.lattice, relaxed.species, relaxed.frac_coords),
            # the last relaxation decides: the first one may stop at NSW, that is its job
            converged=str(final.state.value) == "successful",
            n_steps=sum(len(doc.calcs_reversed[0].output.ionic_steps) for doc in task_docs),
            wall_time_s=time.perf_counter() - start,
            oracle=self.name,
            oracle_version=self.version,
            corrections=corrections,
            directory=str(directory),
        )


def _vasp_jobs(flow: Any) -> list[Any]:
    """The VASP jobs of an atomate2 flow, in run order."""
    from jobflow import Flow

    jobs: list[Any] = []
    for item in flow.jobs:
        jobs.extend(_vasp_jobs(item) if isinstance(item, Flow) else [item])
    return jobs
