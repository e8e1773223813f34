"""What the DFT oracles (VASP, CP2K) share: the command check, a folder per candidate, an
optional CHGNet pre-relaxation and the batch's walltime.

A DFT subclass still writes one method, :meth:`Oracle.relax_one`; it calls
:meth:`DftOracle.candidate_folder`, :meth:`DftOracle.not_started` and
:meth:`DftOracle.prerelaxed` from it, and wraps :meth:`Oracle.relax` with
:meth:`DftOracle.start_batch`.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import time
from pathlib import Path
from typing import Any

from pymatgen.core import Structure

from hullhunter.workflows.oracles.base import Oracle
from hullhunter.workflows.oracles.forcefield import ForceFieldOracle
from hullhunter.workflows.oracles.result import OracleResult
from hullhunter.workflows.oracles.vasp_custodian import WALLTIME_BUFFER_S, slurm_remaining_seconds

PRERELAXERS = (None, "chgnet")


def missing_program(command: str, prefix: str) -> str | None:
    """The first program of ``command`` (its first word, and any word naming a ``prefix``
    program, e.g. ``srun vasp_std``) that is not an executable on PATH, else None."""
    words = shlex.split(os.path.expandvars(command))
    programs = words[:1] + [w for w in words[1:] if Path(w).name.lower().startswith(prefix)]
    return next((program for program in programs if shutil.which(program) is None), None)


def safe_folder_name(candidate_id: str) -> str:
    """A candidate id as a folder name."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", candidate_id) or "candidate"


class DftOracle(Oracle):
    """An oracle that runs a DFT code through custodian, one folder per candidate.

    ``root_dir`` holds a folder per candidate (named after its id); ``prerelax`` (``"chgnet"``
    or None) relaxes each candidate with that force field first, with ``prerelax_settings``;
    ``wall_time_s`` is what a batch may run (default: what SLURM says is left, else no
    limit) and no candidate starts with less than twice ``walltime_buffer_s`` left.
    """

    def __init__(
        self,
        *,
        root_dir: str | Path = ".",
        prerelax: str | None = None,
        prerelax_settings: dict[str, Any] | None = None,
        wall_time_s: int | None = None,
        walltime_buffer_s: int = WALLTIME_BUFFER_S,
        progress: bool = False,
    ) -> None:
        if prerelax not in PRERELAXERS:
            raise ValueError(
                f"unknown {self.name.upper()} prerelax {prerelax!r}; choose one of {PRERELAXERS} "
                "(None: off)"
            )
        self.root_dir = Path(root_dir).resolve()
        self.prerelax = prerelax
        self.prerelax_settings = dict(prerelax_settings or {})
        self._prerelaxer = (
            ForceFieldOracle(prerelax, **{"record_frames": False, **self.prerelax_settings})
            if prerelax
            else None
        )
        self.wall_time_s = wall_time_s
        self.walltime_buffer_s = walltime_buffer_s
        self.progress = progress
        self._batch_wall_time: int | None = None
        self._deadline: float | None = None

    def with_prerelaxation(self, version: str) -> str:
        """``version`` plus the pre-relaxation, when there is one."""
        if self._prerelaxer is None:
            return version
        return f"{version} after {self._prerelaxer.version} pre-relaxation"

    def start_batch(self) -> int | None:
        """Start the batch's clock; returns its walltime in seconds (None: no limit)."""
        self._batch_wall_time = self.wall_time_s or slurm_remaining_seconds()
        self._deadline = (
            None if self._batch_wall_time is None else time.monotonic() + self._batch_wall_time
        )
        return self._batch_wall_time

    def seconds_left(self) -> int | None:
        """Seconds the batch has left, None without a limit."""
        return None if self._deadline is None else int(self._deadline - time.monotonic())

    def candidate_folder(self, candidate_id: str) -> Path:
        """The candidate's own folder under ``root_dir`` (a rerun finds it again)."""
        return self.root_dir / safe_folder_name(candidate_id)

    def not_started(self, candidate_id: str, structure: Structure) -> OracleResult | None:
        """A failed result when too little walltime is left to start, else None."""
        left = self.seconds_left()
        if left is None or left >= 2 * self.walltime_buffer_s:
            return None
        return self.failed_result(
            candidate_id,
            structure,
            f"not started: {left} s of walltime left; rerun the batch to continue",
            directory=str(self.candidate_folder(candidate_id)),
        )

    def prerelaxed(self, structure: Structure, candidate_id: str) -> Structure:
        """The structure after the pre-relaxation (an unconverged one is used as it is), or
        the structure itself without one. Raises when the pre-relaxation fails."""
        if self._prerelaxer is None:
            return structure
        (result,) = self._prerelaxer.relax([structure], [candidate_id])
        if result.structure is None:
            raise RuntimeError(f"{self.prerelax} pre-relaxation failed: {result.error}")
        return result.structure
