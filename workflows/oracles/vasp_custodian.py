"""Custodian around the VASP oracle's runs: its error handlers, its settings and the walltime.

The oracle hands these to atomate2's ``run_vasp`` and reads back what custodian logged. The
walltime pieces live here because custodian enforces it: its WalltimeHandler writes a STOPCAR
before the SLURM limit, counting from the time kept in ``CUSTODIAN_WALLTIME_START``.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from custodian.custodian import ErrorHandler
from custodian.vasp.handlers import (
    FrozenJobErrorHandler,
    IncorrectSmearingHandler,
    KspacingMetalHandler,
    LargeSigmaHandler,
    MeshSymmetryErrorHandler,
    NonConvergingErrorHandler,
    PositiveEnergyErrorHandler,
    PotimErrorHandler,
    StdErrHandler,
    UnconvergedErrorHandler,
    VaspErrorHandler,
)
from monty.io import zopen
from monty.json import jsanitize

HANDLERS: dict[str, type[ErrorHandler]] = {
    "VaspErrorHandler": VaspErrorHandler,
    "MeshSymmetryErrorHandler": MeshSymmetryErrorHandler,
    "UnconvergedErrorHandler": UnconvergedErrorHandler,
    "NonConvergingErrorHandler": NonConvergingErrorHandler,
    "PotimErrorHandler": PotimErrorHandler,
    "PositiveEnergyErrorHandler": PositiveEnergyErrorHandler,
    "FrozenJobErrorHandler": FrozenJobErrorHandler,
    "StdErrHandler": StdErrHandler,
    "LargeSigmaHandler": LargeSigmaHandler,
    "IncorrectSmearingHandler": IncorrectSmearingHandler,
    "KspacingMetalHandler": KspacingMetalHandler,
}
"""atomate2's default VASP handler set (``atomate2.vasp.run.DEFAULT_HANDLERS``), by name and
in its order; WalltimeHandler is added when there is a walltime. atomate2's default validators
(vasprun.xml parses, the output files exist) run after them."""

WALLTIME_START_VARIABLE = "CUSTODIAN_WALLTIME_START"
WALLTIME_ERROR = "Walltime reached"  # what custodian's WalltimeHandler logs
WALLTIME_BUFFER_S = 300
"""Seconds before the SLURM limit at which custodian stops VASP (and no new candidate starts)."""

CUSTODIAN_DEFAULTS = {"polling_time_step": 0.1, "monitor_freq": 1200}
"""Custodian notices a finished VASP run within 0.1 s (its stock 10 s adds ~5 s to every run,
which adds up over a batch of small cells; a poll is one cheap system call) and still runs
the monitors (frozen job, walltime...) every two minutes, well inside the walltime buffer."""


def custodian_handler(
    spec: str | ErrorHandler, known: dict[str, type[ErrorHandler]] = HANDLERS
) -> ErrorHandler:
    """The handler itself, or a new one of the class of that name in ``known``."""
    if isinstance(spec, ErrorHandler):
        return spec
    known_handler_names([spec], known)
    return known[spec]()


def known_handler_names(
    names: list[str] | None, known: dict[str, type[ErrorHandler]] = HANDLERS
) -> list[str] | None:
    """``names`` when each is a handler of ``known`` (VASP's by default); one line if not."""
    unknown = [name for name in names or () if name not in known]
    if unknown:
        raise ValueError(
            f"unknown custodian handler(s) {', '.join(unknown)}; choose from {', '.join(known)}"
        )
    return names


def fresh_handlers(handlers: Sequence[ErrorHandler]) -> list[ErrorHandler]:
    """Unused copies of configured handlers, one set per custodian run.

    Custodian's handlers count what they did (VaspErrorHandler steps through tiers of fixes
    per error: ISTART, then IMIX, then k-points for BRMIX); a handler reused across runs would
    give a fresh candidate the later tier meant for another. Copies of the configured
    instances keep any settings they were given (e.g. a FrozenJobErrorHandler's timeout).
    """
    return [copy.deepcopy(handler) for handler in handlers]


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


@contextmanager
def walltime_started_now() -> Iterator[None]:
    """Custodian's walltime counts from now (``CUSTODIAN_WALLTIME_START``), restored after."""
    previous_start = os.environ.get(WALLTIME_START_VARIABLE)
    os.environ[WALLTIME_START_VARIABLE] = datetime.now().strftime("%a %b %d %H:%M:%S UTC %Y")
    try:
        yield
    finally:
        if previous_start is None:
            os.environ.pop(WALLTIME_START_VARIABLE, None)
        else:
            os.environ[WALLTIME_START_VARIABLE] = previous_start


def custodian_corrections(run_dir: Path) -> list[dict[str, Any]]:
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


def stopped_by_walltime(corrections: list[dict[str, Any]]) -> bool:
    """Whether custodian's WalltimeHandler stopped one of the runs these corrections are from."""
    return any(WALLTIME_ERROR in correction["errors"] for correction in corrections)
