"""Stage 4, hull: the round's results on the campaign's hull, materials and round metrics.

The hull starts from the seed round's calculations (the campaign's own reference, as GNoME
recomputed its seeds) and adds each round in order, so every result is judged against the
hull it was predicted for.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pymatgen.entries.computed_entries import ComputedStructureEntry

from hullhunter.documents import Calculation, Candidate, Material, Round, mongo_safe
from hullhunter.hull import EntryRecord, HullSet, classification_metrics
from hullhunter.workflows.round.records import SEED_ROUND, usable_calculations


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
    usable = usable_calculations(name, round_number)
    hull = hull_from(name, usable)
    calculations = {c.candidate_id: c for c in usable}
    candidates = {
        c.candidate_id: c
        for c in Candidate.objects(campaign=name, candidate_id__in=list(calculations))
    }
    for record in hull.records():
        calc = calculations[record.entry_id]
        if calc.round == SEED_ROUND or record.hit or record.on_hull:
            save_material(name, calc, record, candidates.get(record.entry_id))
    metrics = mongo_safe(round_metrics(name, round_number, hull))
    Round.objects(campaign=name, number=round_number).update_one(
        upsert=True, set__metrics=metrics, set__status="relaxed"
    )
    return hull, metrics


def save_material(
    name: str, calc: Calculation, record: EntryRecord, candidate: Candidate | None
) -> None:
    """Upsert the Material document of a seed, a hit or an entry on the hull."""
    structure = calc.get_structure()
    elements = sorted(el.symbol for el in structure.composition.elements)
    Material.objects(campaign=name, material_id=record.entry_id).update_one(
        upsert=True,
        set__formula=calc.formula,
        set__chemsys=calc.chemsys,
        set__elements=elements,
        set__nelements=len(elements),
        set__structure=calc.structure,
        set__energy_per_atom=calc.energy_per_atom,
        set__decomposition_energy=record.decomposition_energy,
        set__is_seed=calc.round == SEED_ROUND,
        set__round_found=calc.round,
        set__generator=candidate.generator if candidate else None,
        set__stable_vs_reference=bool(record.stable_vs_reference),
        set__on_hull=bool(record.on_hull),
        set__updated_at=datetime.now(UTC),
    )


def round_metrics(name: str, round_number: int, hull: HullSet) -> dict[str, Any]:
    """Hit rate and counts of the round, totals on the hull, and the screening model's error."""
    per_round = {m["round"]: m for m in hull.round_metrics()}
    metrics: dict[str, Any] = dict(per_round.get(round_number, {}))
    calcs = Calculation.objects(campaign=name, round=round_number)
    metrics["calculations"] = dict(Counter(c.state for c in calcs))
    metrics["on_hull_total"] = Material.objects(campaign=name, on_hull=True).count()
    metrics["new_on_hull_total"] = Material.objects(
        campaign=name, on_hull=True, is_seed=False
    ).count()
    if round_number != SEED_ROUND:
        metrics.update(model_error(name, round_number, hull))
    return metrics


def model_error(name: str, round_number: int, hull: HullSet) -> dict[str, Any]:
    """How well the screening model predicted the oracle energies of this round's relaxations."""
    calculations = {
        c.candidate_id: c
        for c in Calculation.objects(campaign=name, round=round_number, state="completed")
    }
    pairs = [
        (
            candidate.predicted_energy_per_atom,
            calculations[candidate.candidate_id].energy_per_atom,
            candidate.predicted_decomposition_energy,
            candidate.candidate_id,
        )
        for candidate in Candidate.objects(
            candidate_id__in=list(calculations), predicted_energy_per_atom__ne=None
        )
    ]
    if not pairs:
        return {}
    predicted, oracle, predicted_ed, ids = (list(column) for column in zip(*pairs, strict=True))
    records = {r.entry_id: r for r in hull.records()}
    true_ed = [records[i].e_vs_previous if i in records else np.nan for i in ids]
    keep = np.isfinite(true_ed)
    classification = classification_metrics(
        np.asarray(predicted_ed)[keep], np.asarray(true_ed)[keep]
    )
    return {
        "model_mae_ev_per_atom": float(np.mean(np.abs(np.subtract(predicted, oracle)))),
        "n_predicted": len(pairs),
        "screening": classification,
        "parity": {"predicted": predicted, "oracle": oracle},
    }
