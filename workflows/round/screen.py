"""Stage 2, screen and select: predict, score against the hull, choose the oracle's work.

GNoME's rule (:func:`select_for_oracle`, a pure function with its random generator passed
in): predicted decomposition energy at most the campaign's threshold, the lowest-energy
structure per composition, best first, plus an exploration share of random other candidates.
"""

from __future__ import annotations

import itertools
import random

import numpy as np
from pymongo import UpdateOne

from hullhunter.campaign_config import CampaignConfig
from hullhunter.documents import Calculation, Candidate
from hullhunter.workflows.model_store import latest_ensemble
from hullhunter.workflows.round.hull import build_hull
from hullhunter.workflows.round.records import SEED_ROUND


def screen(
    name: str, round_number: int, config: CampaignConfig, torch_threads: int | None = None
) -> list[str]:
    """Select candidates for the oracle; returns every selected id of the campaign.

    The pool is every candidate of the campaign not yet relaxed: this round's new ones and
    those earlier models rejected, re-scored by the newest model. Compositional (AIRSS)
    candidates were already filtered by the compositional model. A rerun after a lost job
    keeps what the first run selected. ``torch_threads`` is this worker's setting.
    """
    already = set(Candidate.objects(campaign=name, status="selected").distinct("candidate_id"))
    if round_number == SEED_ROUND:
        pool = list(Candidate.objects(campaign=name, round=SEED_ROUND, status="generated"))
        chosen = pool
    else:
        pool = list(Candidate.objects(campaign=name, status__in=["generated", "rejected"]))
        budget_left = (
            config.budget.max_oracle_calls
            - Calculation.objects(campaign=name).count()
            - len(already)
        )
        places = max(min(config.screening.top_k - len(already), budget_left), 0)
        chosen = choose(name, config, pool, places, torch_threads)
    chosen_ids = {c.candidate_id for c in chosen}
    Candidate.objects(candidate_id__in=sorted(chosen_ids)).update(set__status="selected")
    rejected = [c.candidate_id for c in pool if c.candidate_id not in chosen_ids]
    Candidate.objects(candidate_id__in=rejected).update(set__status="rejected")
    return sorted(already | chosen_ids)


def choose(
    name: str,
    config: CampaignConfig,
    pending: list[Candidate],
    places: int,
    torch_threads: int | None,
) -> list[Candidate]:
    """When both pipelines ran, AIRSS candidates take at most half of the round's places."""
    compositional = [c for c in pending if c.pipeline == "compositional"]
    structural = [c for c in pending if c.pipeline != "compositional"]
    compositional = compositional[: (places + 1) // 2 if structural else places]
    places -= len(compositional)
    if not structural or places <= 0:
        return compositional
    decomposition = score(name, config, structural, torch_threads)
    chosen = select_for_oracle(
        [c.formula for c in structural],
        decomposition,
        places,
        config.screening.max_decomposition_energy,
        config.screening.exploration_fraction,
        config.screening.one_per_composition,
        random.Random(f"{name}-{max(c.round for c in structural)}"),
    )
    return compositional + [structural[i] for i in chosen]


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
) -> list[int]:
    """GNoME's selection: indices of the candidates to relax, best first.

    With ``one_per_composition`` only the lowest predicted decomposition energy of each
    formula competes. Up to ``places`` minus the exploration share go to candidates at or
    below ``threshold``, best first; the exploration share goes to random other candidates.
    """
    order = np.argsort(decomposition, kind="stable")
    if one_per_composition:
        best: dict[str, int] = {}
        for index in order:
            best.setdefault(formulas[index], int(index))
        ranked = list(best.values())
    else:
        ranked = [int(i) for i in order]
    n_explore = round(places * exploration_fraction)
    exploit = [i for i in ranked if decomposition[i] <= threshold][: places - n_explore]
    taken = set(exploit)
    rest = [i for i in ranked if i not in taken]
    explore = rng.sample(rest, min(n_explore, places - len(exploit), len(rest)))
    return exploit + explore


def batches(ids: list[str], size: int) -> list[list[str]]:
    """Split candidate ids into relaxation batches of at most ``size``."""
    iterator = iter(ids)
    return [batch for batch in iter(lambda: list(itertools.islice(iterator, size)), [])]
