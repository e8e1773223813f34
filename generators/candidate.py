"""The one record every generator yields: a candidate structure with its provenance."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pymatgen.core import Structure


@dataclass
class Candidate:
    """A proposed crystal with the generator, parent and parameters that made it.

    ``params`` must be JSON-safe (strings, numbers, lists, dicts) so provenance survives
    into MongoDB unchanged.
    """

    structure: Structure
    generator: str
    parent_id: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def formula(self) -> str:
        """Reduced formula, e.g. 'LiMn2O4'."""
        return self.structure.composition.reduced_formula

    @property
    def chemsys(self) -> str:
        """Chemical system, elements sorted alphabetically and joined by '-'."""
        return "-".join(sorted({el.symbol for el in self.structure.composition.elements}))

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe dict with the structure as a pymatgen dict."""
        return {
            "structure": self.structure.as_dict(),
            "generator": self.generator,
            "parent_id": self.parent_id,
            "params": self.params,
            "formula": self.formula,
            "chemsys": self.chemsys,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candidate:
        """Inverse of :meth:`as_dict` (derived fields are recomputed, not read)."""
        return cls(
            structure=Structure.from_dict(data["structure"]),
            generator=data["generator"],
            parent_id=data.get("parent_id"),
            params=dict(data.get("params", {})),
        )
