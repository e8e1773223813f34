"""A prior's held-out figures for its model card, from one prediction of its test split.

The composition-hash test split is predicted once and scored two ways: the MAE per data
source (known crystals, generated candidates, a user's folder), and the known crystals'
stability classification against the hull of all their labels (Matbench Discovery's
convention). Generated candidates are left out of the stability figures: they are labelled
after relaxation, so they say how the screen does, not where a known crystal sits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from pymatgen.entries.computed_entries import ComputedEntry

from hullhunter import hull, models

if TYPE_CHECKING:
    from hullhunter.workflows.pretrain import Sample


def held_out_metrics(
    ensemble: models.Ensemble, samples: Sequence[Sample], generated_source: str
) -> dict[str, Any]:
    """``{"stability": ..., "test_mae_by_source": ...}`` on the test split of ``samples``;
    samples of ``generated_source`` count in the MAE only. Empty dicts without a test split."""
    is_train = models.composition_hash_split([s.structure.composition for s in samples])
    test = np.flatnonzero(~is_train)
    if not len(test):
        return {"stability": {}, "test_mae_by_source": {}}
    predicted = ensemble.predict([samples[i].structure for i in test], tta=False, progress=False)
    error = predicted.energy_per_atom - np.array([samples[i].energy_per_atom for i in test])
    sources = np.array([samples[i].source for i in test])
    by_source = {
        source: float(np.abs(error[sources == source]).mean()) for source in sorted(set(sources))
    }
    crystals = sources != generated_source
    return {
        "stability": _stability(samples, test[crystals], error[crystals], generated_source),
        "test_mae_by_source": by_source,
    }


def _stability(
    samples: Sequence[Sample], test: np.ndarray, error: np.ndarray, generated_source: str
) -> dict[str, Any]:
    """Stability classification of the known test crystals: truth is each one's decomposition
    energy on the hull of all known crystals' labels; the prediction shifts it by the error."""
    if not len(test):
        return {}
    entries = [
        ComputedEntry(s.structure.composition, s.energy_per_atom * len(s.structure), entry_id=i)
        for i, s in enumerate(samples)
        if s.source != generated_source
    ]
    truth = hull.HullSet(entries, max_abs_formation_energy=np.inf).entry_decomposition_energies()
    true_hull = np.array([truth[str(i)] for i in test])
    metrics = hull.classification_metrics(true_hull + error, true_hull)
    return {
        "n_test": len(test),
        "n_stable": int(metrics["tp"] + metrics["fn"]),
        **{k: metrics[k] for k in ("f1", "precision", "recall", "accuracy", "daf", "mae")},
    }
