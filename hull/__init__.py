"""Reference hulls, fast decomposition energies and discovery metrics (hullhunter.hull)."""

from hullhunter.hull.hullset import (
    MAX_ABS_FORMATION_ENERGY,
    STABILITY_TOL,
    EntryRecord,
    HullSet,
    parse_composition,
)

__all__ = [
    "MAX_ABS_FORMATION_ENERGY",
    "STABILITY_TOL",
    "EntryRecord",
    "HullSet",
    "parse_composition",
]
