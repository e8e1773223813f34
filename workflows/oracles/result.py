"""The one record every oracle returns, and the input checks every oracle shares."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from monty.json import jsanitize
from pymatgen.core import Structure
from pymatgen.entries.computed_entries import ComputedStructureEntry

from hullhunter.frames import Frame

MIN_DISTANCE_A = 0.5
"""Atoms closer than this (in Å) make a structure unphysical: no oracle is asked about it."""

FRAME_ENERGY_TOLERANCE = 1e-6
"""eV/atom: how far a relaxation's last frame may sit from its result's energy."""


@dataclass
class OracleResult:
    """One relaxation's outcome, successful or not.

    ``energy`` and ``energy_per_atom`` are on the MP2020-compatible scale: CHGNet's are used
    as they come; VASP's have ``MaterialsProject2020Compatibility`` applied already. So the
    entry from :meth:`to_entry` must never be corrected again.

    ``frames`` is the relaxation trajectory, every step labelled by the oracle, when the
    oracle records it. Frames are bulky arrays: they are left out of :meth:`as_dict` and
    travel as one GridFS blob instead (:func:`~.trajectory.frames_to_bytes`).
    """

    candidate_id: str
    formula: str
    energy_per_atom: float | None
    energy: float | None
    structure: Structure | None
    converged: bool
    n_steps: int
    wall_time_s: float
    oracle: str
    oracle_version: str
    error: str | None = None
    corrections: list[dict[str, Any]] = field(default_factory=list)
    directory: str | None = None
    frames: list[Frame] = field(default_factory=list, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """True when the oracle produced an energy (converged or not)."""
        return self.error is None and self.energy is not None

    def to_entry(self) -> ComputedStructureEntry:
        """The relaxed structure and its energy as an entry whose id is the candidate id."""
        if not self.ok or self.structure is None:
            raise ValueError(
                f"candidate {self.candidate_id!r} has no energy ({self.error or 'no result'}); "
                "keep only results with .ok before making entries"
            )
        return ComputedStructureEntry(
            self.structure,
            self.energy,
            entry_id=self.candidate_id,
            parameters={"oracle": self.oracle, "oracle_version": self.oracle_version},
            data={"converged": self.converged, "n_steps": self.n_steps},
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe dict (the structure as a pymatgen dict), without the frames."""
        data = {key: value for key, value in asdict(self).items() if key != "frames"}
        data["structure"] = self.structure.as_dict() if self.structure is not None else None
        return jsanitize(data, strict=False, allow_bson=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OracleResult:
        """Inverse of :meth:`as_dict`."""
        values = dict(data)
        if values.get("structure") is not None:
            values["structure"] = Structure.from_dict(values["structure"])
        return cls(**values)

    @classmethod
    def failed(
        cls,
        candidate_id: str,
        structure: Structure,
        reason: str,
        *,
        oracle: str,
        oracle_version: str,
        wall_time_s: float = 0.0,
        directory: str | None = None,
        corrections: list[dict[str, Any]] | None = None,
    ) -> OracleResult:
        """A failed calculation: no energy, the reason in ``error``."""
        return cls(
            candidate_id=candidate_id,
            formula=structure.composition.reduced_formula,
            energy_per_atom=None,
            energy=None,
            structure=None,
            converged=False,
            n_steps=0,
            wall_time_s=wall_time_s,
            oracle=oracle,
            oracle_version=oracle_version,
            error=reason,
            corrections=corrections or [],
            directory=directory,
        )


def structure_problem(structure: Structure, known_elements: set[str] | None = None) -> str | None:
    """Why an oracle must not be run on this structure, or None when it may.

    Checks atoms closer than :data:`MIN_DISTANCE_A` (periodic images included), missing or
    dummy species, and elements outside ``known_elements`` when given.
    """
    if len(structure) == 0:
        return "structure has no atoms"
    if not structure.is_ordered:
        return "structure is disordered (partial occupancies); order it first"
    symbols = {site.specie.symbol for site in structure}
    if known_elements is not None:
        unknown = sorted(symbols - known_elements)
        if unknown:
            return f"element(s) {', '.join(unknown)} not covered by this oracle"
    _, _, _, distances = structure.get_neighbor_list(MIN_DISTANCE_A)
    if len(distances):
        return (
            f"atoms closer than {MIN_DISTANCE_A} Å (closest {min(distances):.3f} Å); "
            "the structure is unphysical"
        )
    return None


def frames_problem(result: OracleResult) -> str | None:
    """Why a result's frames contradict it, or None: the last frame must be the result.

    The last step of a relaxation is the relaxed structure, so its energy is the result's
    energy. When they differ, the parsed output is inconsistent (e.g. step energies that
    VASP 5.x wrote as 0.0, or a vasprun.xml cut mid-write), and frames from it would be
    wrong training data.
    """
    if not result.ok or not result.frames:
        return None
    last = result.frames[-1].energy_per_atom
    if abs(last - result.energy_per_atom) <= FRAME_ENERGY_TOLERANCE:
        return None
    return (
        f"inconsistent output: the last frame's energy ({last:.6f} eV/atom) is not the "
        f"result's ({result.energy_per_atom:.6f} eV/atom); neither is kept"
    )


def with_checked_frames(result: OracleResult) -> OracleResult:
    """The result, or a failed copy without energies and frames when :func:`frames_problem`."""
    problem = frames_problem(result)
    if problem is None:
        return result
    return replace(result, energy=None, energy_per_atom=None, error=problem, frames=[])


def check_ids(structures: list[Structure], ids: list[str]) -> None:
    """Raise if ``structures`` and ``ids`` do not pair up one to one."""
    if len(structures) != len(ids):
        raise ValueError(
            f"got {len(structures)} structures but {len(ids)} ids; pass one id per structure"
        )
    if len(set(ids)) != len(ids):
        raise ValueError("candidate ids repeat; pass a unique id per structure")


def paired_inputs(
    structures: Sequence[Structure], ids: Sequence[str]
) -> tuple[list[Structure], list[str]]:
    """The structures as a list and the ids as strings, checked by :func:`check_ids`."""
    structures, ids = list(structures), [str(i) for i in ids]
    check_ids(structures, ids)
    return structures, ids


def failure_reason(exc: BaseException) -> str:
    """An exception as a result's ``error``: its class name and message."""
    return f"{type(exc).__name__}: {exc}"
