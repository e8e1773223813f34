"""What every oracle does around a single relaxation: checks, failure capture, callbacks."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pymatgen.core import Structure
from rich.progress import Progress

from hullhunter.workflows.oracles.result import (
    OracleResult,
    failure_reason,
    paired_inputs,
    structure_problem,
    with_checked_frames,
)

ResultCallback = Callable[[OracleResult], None]


def installed_version(package: str) -> str:
    """A package's installed version, for the ``oracle_version`` of results."""
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


class Oracle(ABC):
    """Relaxes structures and reports one :class:`OracleResult` per input.

    Subclasses implement :meth:`relax_one`; :meth:`relax` adds the input checks, turns any
    exception into a failed result so that one bad candidate never stops a batch, checks that
    each result's frames end at its energy (:func:`with_checked_frames`), and calls
    ``on_result`` as soon as each result exists.
    """

    name: str = "oracle"
    progress: bool = False

    @property
    @abstractmethod
    def version(self) -> str:
        """Version string recorded in every result (code and model/potential version)."""

    @property
    def known_elements(self) -> set[str] | None:
        """Elements this oracle covers; None means any."""
        return None

    @abstractmethod
    def relax_one(self, structure: Structure, candidate_id: str) -> OracleResult:
        """Relax one structure already checked for sanity; may raise on failure."""

    def relax(
        self,
        structures: Sequence[Structure],
        ids: Sequence[str],
        on_result: ResultCallback | None = None,
    ) -> list[OracleResult]:
        """Relax each structure in turn; failures are recorded in the result, never raised."""
        structures, ids = paired_inputs(structures, ids)
        results = []
        with self.reporting(len(structures), on_result) as report:
            for structure, candidate_id in zip(structures, ids, strict=True):
                results.append(report(self._relax_safely(structure, candidate_id)))
        return results

    @contextmanager
    def reporting(
        self, total: int, on_result: ResultCallback | None
    ) -> Iterator[Callable[[OracleResult], OracleResult]]:
        """A callback for each finished result: checks its frames, passes it to ``on_result``,
        advances the bar, and returns the checked result (which the batch keeps)."""
        with Progress(disable=not self.progress, transient=True) as progress:
            task = progress.add_task(f"{self.name} relaxations", total=total)

            def report(result: OracleResult) -> OracleResult:
                result = with_checked_frames(result)
                if on_result is not None:
                    on_result(result)
                progress.advance(task)
                return result

            yield report

    def failed_result(
        self,
        candidate_id: str,
        structure: Structure,
        reason: str,
        *,
        started: float | None = None,
        directory: str | None = None,
        corrections: list[dict[str, Any]] | None = None,
    ) -> OracleResult:
        """:meth:`OracleResult.failed` from this oracle, timed from ``started`` (else 0 s)."""
        return OracleResult.failed(
            candidate_id,
            structure,
            reason,
            oracle=self.name,
            oracle_version=self.version,
            wall_time_s=0.0 if started is None else time.perf_counter() - started,
            directory=directory,
            corrections=corrections,
        )

    def _relax_safely(self, structure: Structure, candidate_id: str) -> OracleResult:
        start = time.perf_counter()
        problem = structure_problem(structure, self.known_elements)
        if problem is None:
            try:
                return self.relax_one(structure, candidate_id)
            except Exception as exc:  # one failed candidate must not fail the batch
                problem = failure_reason(exc)
        return self.failed_result(candidate_id, structure, problem, started=start)
