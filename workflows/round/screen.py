"""Stage 2, screen and select: predict, score against the hull, choose the oracle's work.

The pool (every candidate of the campaign not yet relaxed) is read in chunks, scored by the
newest structural model against the current hull, and fed to GNoME's selection rule
(:mod:`.selection`, pure, its random generator passed in), which keeps only what can still
be picked: memory stays bounded whatever the pool's size. AIRSS structures (compositional
pipeline) are scored by the same structural model and chosen by the same rule, the best
structure per composition. Each selected candidate records why it was picked
(``Candidate.selected_as``, one of :data:`SELECTION_KINDS`).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from bson import ObjectId
from pymatgen.core import Structure
from pymongo import UpdateOne

from hullhunter.campaign_config import CampaignConfig
from hullhunter.documents import Calculation, Candidate, Round
from hullhunter.models import Ensemble
from hullhunter.workflows.model_store import latest_ensemble, latest_version
from hullhunter.workflows.round.hull import build_hull
from hullhunter.workflows.round.records import (
    COMPOSITIONAL,
    SEED,
    SEED_ROUND,
    SELECTION_KINDS,
)
from hullhunter.workflows.round.selection import Selection


class Scored(NamedTuple):
    """One pool candidate as the selection sees it."""

    candidate_id: str
    formula: str
    pipeline: str
    decomposition_energy: float


POOL_FIELDS = {
    "candidate_id": 1,
    "formula": 1,
    "pipeline": 1,
    "predicted_energy_per_atom": 1,
    "predicted_decomposition_energy": 1,
    "scored_by_model": 1,
    "has_structure": {"$eq": [{"$type": "$structure.lattice"}, "object"]},
}
"""What the screen reads of a pool candidate (raw documents, never whole mongoengine objects).
The structure itself is read only for the candidates the model has not scored: decoding it
was most of the time of a pass over a scored pool (2.7 of 4.7 s at 20,000 candidates)."""


def screen(
    name: str, round_number: int, config: CampaignConfig, torch_threads: int | None = None
) -> list[str]:
    """Select candidates for the oracle; returns every selected id of the campaign.

    The pool is every candidate of the campaign not yet relaxed: this round's new ones and
    those earlier models rejected (:func:`scored_pool`). A rerun after a lost job keeps what
    the first run selected. ``torch_threads`` is this worker's setting.
    """
    already = set(Candidate.objects(campaign=name, status="selected").distinct("candidate_id"))
    if round_number == SEED_ROUND:
        seeds = Candidate.objects(campaign=name, round=SEED_ROUND, status="generated")
        chosen = [(candidate_id, SEED) for candidate_id in seeds.distinct("candidate_id")]
    else:
        budget_left = (
            config.budget.max_oracle_calls
            - Calculation.objects(campaign=name).count()
            - len(already)
        )
        places = max(min(config.screening.top_k - len(already), budget_left), 0)
        pool = pool_query(name)
        newest = max(Candidate._get_collection().distinct("round", pool), default=round_number)
        rng = random.Random(f"{name}-{newest}")
        # a generator: nothing is read or predicted unless there are places to fill
        scored = scored_pool(name, round_number, config, pool, torch_threads)
        chosen = choose(config, scored, places, rng)
    for kind in SELECTION_KINDS:
        ids = sorted(candidate_id for candidate_id, why in chosen if why == kind)
        if ids:
            Candidate.objects(candidate_id__in=ids).update(
                set__status="selected", set__selected_as=kind
            )
    if round_number != SEED_ROUND:  # the rest waits for the next model
        Candidate.objects(campaign=name, status="generated").update(set__status="rejected")
    return sorted(already | {candidate_id for candidate_id, _ in chosen})


def choose(
    config: CampaignConfig, scored: Iterable[Scored], places: int, rng: random.Random
) -> list[tuple[str, str]]:
    """The round's picks (candidate id, kind) from the scored pool, read once, in order.

    AIRSS candidates compete among themselves (the best structure per composition within the
    threshold, as GNoME kept the best of its random structures; no exploration share) for at
    most half of the places when both pipelines ran; the structural candidates take the rest,
    their exploration share drawn from the structural pool.
    """
    if places <= 0:
        return []
    threshold = config.screening.max_decomposition_energy
    airss = Selection(places, threshold, 0.0, True, rng)
    structural = Selection(
        places,
        threshold,
        config.screening.exploration_fraction,
        config.screening.one_per_composition,
        rng,
    )
    for row in scored:
        target = airss if row.pipeline == "compositional" else structural
        target.offer(row.formula, row.decomposition_energy, row.candidate_id)
    airss_places = (places + 1) // 2 if structural.n_offered else places
    chosen = [(airss.label(pick.index), COMPOSITIONAL) for pick in airss.picks(airss_places)]
    for pick in structural.picks(places - len(chosen)):
        chosen.append((structural.label(pick.index), pick.kind))
    return chosen


def scored_pool(
    name: str,
    round_number: int,
    config: CampaignConfig,
    query: dict[str, Any],
    torch_threads: int | None,
) -> Iterator[Scored]:
    """The candidates matching ``query``, oldest first, with predicted decomposition energies
    against the current hull, written back one chunk (``screening.chunk_size``) at a time.

    Chunks are read by ``_id`` ranges, so no cursor is held open while a chunk is scored.
    Only candidates the newest structural model has not scored are predicted. A document
    without a structure or formula (written by an older version) is skipped and counted in
    ``counts.screen_skipped`` of round ``round_number``.
    """
    version = latest_version(name, "structural")
    if version is None:
        raise ValueError(f"campaign '{name}' has no trained model: the seed round must finish")
    ensemble: Ensemble | None = None
    hull = build_hull(name)
    collection = Candidate._get_collection()
    skipped, last_id = 0, None
    while True:
        page = (
            query if last_id is None else {**query, "_id": {**query.get("_id", {}), "$gt": last_id}}
        )
        cursor = collection.find(page, projection=POOL_FIELDS).sort("_id", 1)
        chunk = list(cursor.limit(config.screening.chunk_size))
        if not chunk:
            break
        last_id = chunk[-1]["_id"]
        usable = [doc for doc in chunk if doc["has_structure"] and doc.get("formula")]
        skipped += len(chunk) - len(usable)
        if not usable:
            continue
        unscored = [
            doc
            for doc in usable
            if doc.get("scored_by_model") != version or doc.get("predicted_energy_per_atom") is None
        ]
        if unscored:
            ensemble = ensemble or _newest_ensemble(name, torch_threads)
            structures = _structures([doc["_id"] for doc in unscored])
            _predict(ensemble, unscored, structures, version, config.screening.tta)
        energies = [doc["predicted_energy_per_atom"] for doc in usable]
        formulas = [doc["formula"] for doc in usable]
        decomposition = hull.decomposition_energy(formulas, energies).tolist()
        changed = [
            UpdateOne({"_id": doc["_id"]}, {"$set": {"predicted_decomposition_energy": e}})
            for doc, e in zip(usable, decomposition, strict=True)
            if doc.get("predicted_decomposition_energy") != e  # a selection pass writes none
        ]
        if changed:
            collection.bulk_write(changed, ordered=False)
        for doc, e_d in zip(usable, decomposition, strict=True):
            yield Scored(doc["candidate_id"], doc["formula"], doc.get("pipeline", ""), e_d)
    if skipped:
        Round.objects(campaign=name, number=round_number).update_one(
            upsert=True, set__counts__screen_skipped={"missing structure or formula": skipped}
        )


def _newest_ensemble(name: str, torch_threads: int | None) -> Ensemble:
    ensemble = latest_ensemble(name, "structural")
    ensemble.config.torch_threads = torch_threads
    return ensemble


def _structures(ids: list[ObjectId]) -> list[Structure]:
    """The structures of the candidates with these ``_id``s, in that order."""
    found = Candidate._get_collection().find({"_id": {"$in": ids}}, projection=["structure"])
    by_id = {doc["_id"]: doc["structure"] for doc in found}
    return [Structure.from_dict(by_id[identifier]) for identifier in ids]


def _predict(
    ensemble: Ensemble,
    docs: list[dict[str, Any]],
    structures: list[Structure],
    version: int,
    tta: bool,
) -> None:
    """Predict the structures' energies, set them on their documents and in one bulk write."""
    prediction = ensemble.predict(structures, tta=tta, progress=False)
    updates = []
    for doc, energy, spread in zip(docs, prediction.energy_per_atom, prediction.iqr, strict=True):
        doc["predicted_energy_per_atom"] = float(energy)
        fields = {
            "predicted_energy_per_atom": float(energy),
            "predicted_uncertainty": float(spread),
            "scored_by_model": version,
        }
        updates.append(UpdateOne({"_id": doc["_id"]}, {"$set": fields}))
    Candidate._get_collection().bulk_write(updates, ordered=False)  # one round trip, not N


def pool_query(name: str) -> dict[str, Any]:
    """The screen's pool: every candidate of the campaign not yet relaxed."""
    return {"campaign": name, "status": {"$in": ["generated", "rejected"]}}


def pool_shards(
    name: str, round_number: int, shard_size: int
) -> list[tuple[str | None, str | None]]:
    """The pool cut into ``_id`` ranges of ``shard_size`` candidates: ``(lower, upper)``
    bounds as strings (None: open). One shard when the pool fits in one (or in round 0)."""
    if round_number == SEED_ROUND:
        return [(None, None)]
    collection = Candidate._get_collection()
    ids = collection.find(pool_query(name), projection={"_id": 1}).sort("_id", 1)
    bounds = [str(doc["_id"]) for index, doc in enumerate(ids) if index and not index % shard_size]
    edges = [None, *bounds, None]
    return list(itertools.pairwise(edges))


def score_shard(
    name: str,
    round_number: int,
    config: CampaignConfig,
    lower: str | None,
    upper: str | None,
    torch_threads: int | None,
) -> int:
    """Score the pool's candidates with ``lower <= _id < upper`` (predictions written to
    MongoDB); returns how many were read."""
    query = pool_query(name)
    bounds = {}
    if lower is not None:
        bounds["$gte"] = ObjectId(lower)
    if upper is not None:
        bounds["$lt"] = ObjectId(upper)
    if bounds:
        query["_id"] = bounds
    return sum(1 for _ in scored_pool(name, round_number, config, query, torch_threads))


def batches(ids: list[str], size: int) -> list[list[str]]:
    """Split candidate ids into relaxation batches of at most ``size``."""
    iterator = iter(ids)
    return [batch for batch in iter(lambda: list(itertools.islice(iterator, size)), [])]
