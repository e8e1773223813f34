"""Stage 2, screen and select: predict, score against the hull, choose the oracle's work.

GNoME's rule (:func:`select_for_oracle`, a pure function with its random generator passed
in): predicted decomposition energy at most the campaign's threshold, the lowest-energy
structure per composition, best first, plus an exploration share drawn at random from the
whole pool, the unscreened baseline the screen's hit rate is measured against. AIRSS
structures (compositional pipeline) are scored by the same structural model and chosen by the
same rule, the best structure per composition. Each selected candidate records why it was
picked (``Candidate.selected_as``, one of :data:`SELECTION_KINDS`).
"""

from __future__ import annotations

import itertools
import random
from typing import NamedTuple

import numpy as np
from pymongo import UpdateOne

from hullhunter.campaign_config import CampaignConfig
from hullhunter.documents import Calculation, Candidate
from hullhunter.workflows.model_store import latest_ensemble
from hullhunter.workflows.round.hull import build_hull
from hullhunter.workflows.round.records import (
    COMPOSITIONAL,
    EXPLORATION,
    SCREENED,
    SEED,
    SEED_ROUND,
    SELECTION_KINDS,
)


class Pick(NamedTuple):
    """One selected candidate: its index in the pool and why it was picked."""

    index: int
    kind: str


def screen(
    name: str, round_number: int, config: CampaignConfig, torch_threads: int | None = None
) -> list[str]:
    """Select candidates for the oracle; returns every selected id of the campaign.

    The pool is every candidate of the campaign not yet relaxed: this round's new ones and
    those earlier models rejected, re-scored by the newest model. A rerun after a lost job
    keeps what the first run selected. ``torch_threads`` is this worker's setting.
    """
    already = set(Candidate.objects(campaign=name, status="selected").distinct("candidate_id"))
    if round_number == SEED_ROUND:
        pool = list(Candidate.objects(campaign=name, round=SEED_ROUND, status="generated"))
        chosen = [(candidate, SEED) for candidate in pool]
    else:
        pool = list(Candidate.objects(campaign=name, status__in=["generated", "rejected"]))
        budget_left = (
            config.budget.max_oracle_calls
            - Calculation.objects(campaign=name).count()
            - len(already)
        )
        places = max(min(config.screening.top_k - len(already), budget_left), 0)
        chosen = choose(name, config, pool, places, torch_threads)
    for kind in SELECTION_KINDS:
        ids = sorted(c.candidate_id for c, why in chosen if why == kind)
        if ids:
            Candidate.objects(candidate_id__in=ids).update(
                set__status="selected", set__selected_as=kind
            )
    chosen_ids = {c.candidate_id for c, _ in chosen}
    rejected = [c.candidate_id for c in pool if c.candidate_id not in chosen_ids]
    Candidate.objects(candidate_id__in=rejected).update(set__status="rejected")
    return sorted(already | chosen_ids)


def choose(
    name: str,
    config: CampaignConfig,
    pending: list[Candidate],
    places: int,
    torch_threads: int | None,
) -> list[tuple[Candidate, str]]:
    """The round's picks with their kind, every pending candidate scored by the structural model.

    AIRSS candidates compete among themselves (the best structure per composition within the
    threshold, as GNoME kept the best of its random structures; no exploration share) for at
    most half of the places when both pipelines ran; the structural candidates take the rest
    by :func:`select_for_oracle`, their exploration share drawn from the structural pool.
    """
    if places <= 0 or not pending:
        return []
    decomposition = score(name, config, pending, torch_threads)
    rng = random.Random(f"{name}-{max(c.round for c in pending)}")
    airss = [i for i, c in enumerate(pending) if c.pipeline == "compositional"]
    structural = [i for i, c in enumerate(pending) if c.pipeline != "compositional"]
    airss_places = (places + 1) // 2 if structural else places
    chosen = [
        (pending[airss[pick.index]], COMPOSITIONAL)
        for pick in _select(pending, decomposition, airss, airss_places, config, rng, airss=True)
    ]
    for pick in _select(pending, decomposition, structural, places - len(chosen), config, rng):
        chosen.append((pending[structural[pick.index]], pick.kind))
    return chosen


def _select(
    pending: list[Candidate],
    decomposition: np.ndarray,
    subset: list[int],
    places: int,
    config: CampaignConfig,
    rng: random.Random,
    airss: bool = False,
) -> list[Pick]:
    """:func:`select_for_oracle` over ``subset`` of the pool (picks index into ``subset``).

    ``airss``: one structure per composition and no exploration share, whatever the settings.
    """
    if not subset or places <= 0:
        return []
    return select_for_oracle(
        [pending[i].formula for i in subset],
        decomposition[subset],
        places,
        config.screening.max_decomposition_energy,
        0.0 if airss else config.screening.exploration_fraction,
        airss or config.screening.one_per_composition,
        rng,
    )


def score(
    name: str, config: CampaignConfig, candidates: list[Candidate], torch_threads: int | None
) -> np.ndarray:
    """Predicted decomposition energies of ``candidates``, also written to their documents."""
    ensemble = latest_ensemble(name, "structural")
    if ensemble is None:
        raise ValueError(f"campaign '{name}' has no trained model: the seed round must finish")
    ensemble.config.torch_threads = torch_threads
    structures = [c.get_structure() for c in candidates]
    prediction = ensemble.predict(structures, tta=config.screening.tta, progress=False)
    decomposition = build_hull(name).decomposition_energy(
        [s.composition for s in structures], prediction.energy_per_atom
    )
    updates = [
        UpdateOne(
            {"_id": doc.pk},
            {
                "$set": {
                    "predicted_energy_per_atom": float(energy),
                    "predicted_uncertainty": float(spread),
                    "predicted_decomposition_energy": float(e_d),
                }
            },
        )
        for doc, energy, spread, e_d in zip(
            candidates, prediction.energy_per_atom, prediction.iqr, decomposition, strict=True
        )
    ]
    Candidate._get_collection().bulk_write(updates, ordered=False)  # one round trip, not N
    return decomposition


def select_for_oracle(
    formulas: list[str],
    decomposition: np.ndarray,
    places: int,
    threshold: float,
    exploration_fraction: float,
    one_per_composition: bool,
    rng: random.Random,
) -> list[Pick]:
    """GNoME's selection: the candidates to relax and why, screened picks best first.

    The exploration share, ``round(places * exploration_fraction)`` picks, is drawn first,
    uniformly from the whole pool, so its hit rate is an honest unscreened baseline (a draw
    from what the screen rejected would understate it). The other places go to undrawn
    candidates at or below ``threshold``, best first; with ``one_per_composition`` only the
    lowest predicted decomposition energy of each formula competes.
    """
    n_explore = min(round(places * exploration_fraction), len(formulas))
    explore = rng.sample(range(len(formulas)), n_explore)
    drawn = set(explore)
    order = [int(i) for i in np.argsort(decomposition, kind="stable") if int(i) not in drawn]
    if one_per_composition:
        best: dict[str, int] = {}
        for index in order:
            best.setdefault(formulas[index], index)
        ranked = list(best.values())
    else:
        ranked = order
    screened = [i for i in ranked if decomposition[i] <= threshold][: places - n_explore]
    return [Pick(i, SCREENED) for i in screened] + [Pick(i, EXPLORATION) for i in explore]


def batches(ids: list[str], size: int) -> list[list[str]]:
    """Split candidate ids into relaxation batches of at most ``size``."""
    iterator = iter(ids)
    return [batch for batch in iter(lambda: list(itertools.islice(iterator, size)), [])]
