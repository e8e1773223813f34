"""What every oracle does around a single relaxation: checks, failure capture, callbacks."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version

from pymatgen.core import Structure
from rich.progress import Progress

from hullhunter.workflows.oracles.result import OracleResult, check_ids, structure_problem

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
    exception into a failed result so that one bad candidate never stops a batch, and calls
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
        structures, ids = list(structures), [str(i) for i in ids]
        check_ids(structures, ids)
        results = []
        with Progress(disable=not self.progress, transient=True) as progress:
            task = progress.add_task(f"{self.name} relaxations", total=len(structures))
            for structure, candidate_id in zip(structures, ids, strict=True):
                result = self._relax_safely(structure, candidate_id)
                results.append(result)
                if on_result is not None:
                    on_result(result)
                progress.advance(task)
        return results

    def _relax_safely(self, structure: Structure, candidate_id: str) -> OracleResult:
        start = time.perf_counter()
        problem = structure_problem(structure, self.known_elements)
        if problem is None:
            try:
                return self.relax_one(structure, candidate_id)
            except Exception as exc:  # one failed candidate must not fail the batch
                problem = f"{type(exc).__name__}: {exc}"
        return OracleResult.failed(
            candidate_id,
            structure,
            problem,
            oracle=self.name,
            oracle_version=self.version,
            wall_time_s=time.perf_counter() - start,
        )
