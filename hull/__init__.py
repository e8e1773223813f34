"""Reference hulls, fast decomposition energies and discovery metrics (hullhunter.hull)."""

from hullhunter.hull.convex import Hull, build_hull
from hullhunter.hull.hullset import (
    MAX_ABS_FORMATION_ENERGY,
    STABILITY_TOL,
    EntryRecord,
    HullSet,
    parse_composition,
)
from hullhunter.hull.metrics import classification_metrics
from hullhunter.hull.plots import (
    plot_hit_rate,
    plot_model_error,
    plot_novelty,
    plot_parity,
    plot_selection_hit_rate,
    plot_ternary_hull,
)
from hullhunter.hull.reference import (
    elemental_energies,
    elemental_references,
    load_mp_reference_entries,
    mp_hull_of,
)

__all__ = [
    "MAX_ABS_FORMATION_ENERGY",
    "STABILITY_TOL",
    "EntryRecord",
    "Hull",
    "HullSet",
    "build_hull",
    "classification_metrics",
    "elemental_energies",
    "elemental_references",
    "load_mp_reference_entries",
    "mp_hull_of",
    "parse_composition",
    "plot_hit_rate",
    "plot_model_error",
    "plot_novelty",
    "plot_parity",
    "plot_selection_hit_rate",
    "plot_ternary_hull",
]
