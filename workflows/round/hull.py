"""Stage 4, hull: the round's results on the campaign's hull, materials and round metrics.

The hull starts from the seed round's calculations (the campaign's own reference, as GNoME
recomputed its seeds) and adds each round in order, so every result is judged against the
hull it was predicted for. A hit is a result on or below the hull as it stood before its
round. Each round's metrics count hits per selection kind (screened picks against the random
exploration baseline), grade the screen's stable call on every labelled candidate, and
class each new material on the hull as novel, new polymorph or rediscovered against the
known world (:mod:`hullhunter.generators.known`).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np
from pymatgen.entries.computed_entries import ComputedStructureEntry

from hullhunter.campaign_config import CampaignConfig
from hullhunter.documents import Calculation, Candidate, Material, Round, mongo_safe
from hullhunter.generators.known import NOVELTY_CLASSES, KnownWorld, Novelty, known_world
from hullhunter.hull import STABILITY_TOL, EntryRecord, HullSet, classification_metrics
from hullhunter.workflows.round.records import (
    COMPOSITIONAL,
    EXPLORATION,
    SCREENED,
    SEED_ROUND,
    load_campaign,
    usable_calculations,
)


def entry(calc: Calculation) -> ComputedStructureEntry:
    """A calculation as a pymatgen entry, its candidate id as the entry id."""
    structure = calc.get_structure()
    return ComputedStructureEntry(
        structure,
        calc.energy_per_atom * len(structure),
        entry_id=calc.candidate_id,
        data={"round": calc.round},
    )


def build_hull(name: str, up_to_round: int | None = None) -> HullSet:
    """The campaign's hull: seed calculations as the reference, then each round in order."""
    return hull_from(name, usable_calculations(name, up_to_round))


def hull_from(name: str, calculations: list[Calculation]) -> HullSet:
    """The hull of ``calculations``: round 0 as the reference, later rounds added in order."""
    seeds = [c for c in calculations if c.round == SEED_ROUND]
    if not seeds:
        raise ValueError(f"campaign '{name}' has no relaxed seeds yet: the seed round must run")
    hull = HullSet([entry(c) for c in seeds])
    rounds = sorted({c.round for c in calculations if c.round != SEED_ROUND})
    for number in rounds:
        hull.add([entry(c) for c in calculations if c.round == number], round=number)
    return hull


def update_hull(name: str, round_number: int) -> tuple[HullSet, dict[str, Any]]:
    """Place this round's results on the hull; refresh Material documents and round metrics.

    Returns the hull (through this round) and the round's metrics as stored.
    """
    _, config = load_campaign(name)
    usable = usable_calculations(name, round_number)
    hull = hull_from(name, usable)
    calculations = {c.candidate_id: c for c in usable}
    candidates = {
        c.candidate_id: c
        for c in Candidate.objects(campaign=name, candidate_id__in=list(calculations))
    }
    classified = set(Material.objects(campaign=name, novelty__ne=None).distinct("material_id"))
    for record in hull.records():
        calc = calculations[record.entry_id]
        if calc.round == SEED_ROUND or record.hit or record.on_hull:
            novelty = None
            if calc.round != SEED_ROUND and record.entry_id not in classified:
                novelty = known_world_of(config).classify(calc.get_structure())
            save_material(name, calc, record, candidates.get(record.entry_id), novelty)
    metrics = mongo_safe(round_metrics(name, round_number, hull, config))
    Round.objects(campaign=name, number=round_number).update_one(
        upsert=True, set__metrics=metrics, set__status="relaxed"
    )
    return hull, metrics


def known_world_of(config: CampaignConfig) -> KnownWorld:
    """The known world a campaign's discoveries are classed against, its own seeds included."""
    return known_world(None if config.seeds.source == "builtin" else config.seeds.source)


def save_material(
    name: str,
    calc: Calculation,
    record: EntryRecord,
    candidate: Candidate | None,
    novelty: Novelty | None = None,
) -> None:
    """Upsert the Material document of a seed, a hit or an entry on the hull.

    ``novelty`` is set once, when a discovery is first saved (seeds have none).
    """
    structure = calc.get_structure()
    elements = sorted(el.symbol for el in structure.composition.elements)
    classes = (
        {
            "set__novelty": novelty.novelty,
            "set__known_in": list(novelty.known_in),
            "set__novelty_match": novelty.match_id,
        }
        if novelty
        else {}
    )
    Material.objects(campaign=name, material_id=record.entry_id).update_one(
        upsert=True,
        set__formula=calc.formula,
        set__chemsys=calc.chemsys,
        set__elements=elements,
        set__nelements=len(elements),
        set__structure=calc.structure,
        set__energy_per_atom=calc.energy_per_atom,
        set__formation_energy_per_atom=record.formation_energy_per_atom,
        set__decomposition_energy=record.decomposition_energy,
        set__e_above_hull=record.e_above_hull,
        set__is_stable=record.e_above_hull <= STABILITY_TOL,
        set__oracle=calc.oracle,
        set__is_seed=calc.round == SEED_ROUND,
        set__round_found=calc.round,
        set__generator=candidate.generator if candidate else None,
        set__stable_vs_reference=bool(record.stable_vs_reference),
        set__on_hull=bool(record.on_hull),
        set__updated_at=datetime.now(UTC),
        **classes,
    )


def round_metrics(
    name: str, round_number: int, hull: HullSet, config: CampaignConfig
) -> dict[str, Any]:
    """Hit rates and counts of the round, totals on the hull, the screen's quality, novelty."""
    per_round = {m["round"]: m for m in hull.round_metrics()}
    metrics: dict[str, Any] = dict(per_round.get(round_number, {}))
    calcs = Calculation.objects(campaign=name, round=round_number)
    metrics["calculations"] = dict(Counter(c.state for c in calcs))
    metrics["on_hull_total"] = Material.objects(campaign=name, on_hull=True).count()
    metrics["new_on_hull_total"] = Material.objects(
        campaign=name, on_hull=True, is_seed=False
    ).count()
    if round_number != SEED_ROUND:
        metrics.update(selection_hit_rates(name, round_number, hull))
        metrics.update(model_error(name, round_number, hull, config))
        metrics["novelty"] = novelty_counts(name, round_number)
    return metrics


def selection_hit_rates(name: str, round_number: int, hull: HullSet) -> dict[str, Any]:
    """Hits per selection kind, this round and all rounds so far, and the screen's enrichment.

    ``selection`` holds {kind: {accepted, hits, hit_rate}} for screened, exploration and
    compositional (AIRSS) picks; enrichment = screened hit rate / exploration hit rate
    (NaN when exploration found nothing or had no picks), the honest discovery acceleration
    because exploration picks are a uniform draw from the same pool. ``cumulative_selection``
    and ``cumulative_enrichment`` count every round through this one (larger samples).
    """
    records = [r for r in hull.records() if r.round is not None and r.round <= round_number]
    kinds = dict(
        Candidate.objects(campaign=name, candidate_id__in=[r.entry_id for r in records]).scalar(
            "candidate_id", "selected_as"
        )
    )
    selection = _hits_by_kind([r for r in records if r.round == round_number], kinds)
    cumulative = _hits_by_kind(records, kinds)
    return {
        "selection": selection,
        "screened_hit_rate": selection[SCREENED]["hit_rate"],
        "exploration_hit_rate": selection[EXPLORATION]["hit_rate"],
        "enrichment": _enrichment(selection),
        "cumulative_selection": cumulative,
        "cumulative_enrichment": _enrichment(cumulative),
    }


def _hits_by_kind(records: list[EntryRecord], kinds: dict[str, str]) -> dict[str, dict]:
    """{kind: {accepted, hits, hit_rate}} of the records, by their candidate's selection kind."""
    out = {}
    for kind in (SCREENED, EXPLORATION, COMPOSITIONAL):
        group = [r for r in records if kinds.get(r.entry_id) == kind]
        hits = sum(r.hit for r in group)
        out[kind] = {"accepted": len(group), "hits": hits, "hit_rate": _ratio(hits, len(group))}
    return out


def _enrichment(selection: dict[str, dict]) -> float:
    screened, exploration = selection[SCREENED]["hit_rate"], selection[EXPLORATION]["hit_rate"]
    return screened / exploration if exploration > 0 else float("nan")


def novelty_counts(name: str, round_number: int) -> dict[str, int]:
    """How many of the round's discoveries now on the hull are of each novelty class."""
    found = Material.objects(campaign=name, round_found=round_number, on_hull=True, is_seed=False)
    counts = Counter(found.scalar("novelty"))
    return {kind: counts.get(kind, 0) for kind in NOVELTY_CLASSES}


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else float("nan")


class Labelled(NamedTuple):
    """A relaxed candidate with the screen's prediction and the oracle's verdict."""

    round: int
    predicted: float  # energy per atom
    oracle: float
    predicted_decomposition: float
    decomposition_vs_previous: float  # against the hull before its round (NaN: left out)


def model_error(
    name: str, round_number: int, hull: HullSet, config: CampaignConfig
) -> dict[str, Any]:
    """How well the screening model predicted this round's oracle results.

    Over every relaxed candidate of the round with a prediction (screened, exploration and
    AIRSS picks together): the energy MAE and parity pairs, and in ``screening`` the
    precision, recall, F1 and DAF of the screen's call (predicted decomposition energy within
    the campaign's threshold) against the oracle's verdict (a hit); ``cumulative_screening``
    grades every round through this one. The prevalence under DAF is that of the labelled
    picks, which screening enriches; ``enrichment`` compares with the unscreened baseline.
    """
    calculations = {
        c.candidate_id: c
        for c in Calculation.objects(
            campaign=name, round__gt=SEED_ROUND, round__lte=round_number, state="completed"
        )
    }
    records = {r.entry_id: r for r in hull.records()}
    labelled = [
        Labelled(
            calc.round,
            candidate.predicted_energy_per_atom,
            calc.energy_per_atom,
            candidate.predicted_decomposition_energy,
            records[calc.candidate_id].e_vs_previous if calc.candidate_id in records else np.nan,
        )
        for candidate in Candidate.objects(
            candidate_id__in=list(calculations), predicted_energy_per_atom__ne=None
        )
        for calc in [calculations[candidate.candidate_id]]
    ]
    mine = [row for row in labelled if row.round == round_number]
    if not mine:
        return {}
    predicted, oracle = [row.predicted for row in mine], [row.oracle for row in mine]
    gate = config.screening.max_decomposition_energy
    return {
        "model_mae_ev_per_atom": float(np.mean(np.abs(np.subtract(predicted, oracle)))),
        "n_predicted": len(mine),
        "screening": screen_call_metrics(mine, gate),
        "cumulative_screening": screen_call_metrics(labelled, gate),
        "parity": {"predicted": predicted, "oracle": oracle},
    }


def screen_call_metrics(rows: list[Labelled], gate: float) -> dict[str, float]:
    """Classification metrics of the screen's call (predicted within ``gate``) against a hit."""
    predicted = np.array([row.predicted_decomposition for row in rows], dtype=float)
    true = np.array([row.decomposition_vs_previous for row in rows], dtype=float)
    keep = np.isfinite(true)
    return classification_metrics(
        predicted[keep],
        true[keep],
        threshold=STABILITY_TOL,  # a hit, as the hull counts it
        predicted_threshold=gate,
    )
