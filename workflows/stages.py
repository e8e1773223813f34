"""The stages of one flywheel round, as plain functions over the campaign's MongoDB documents.

Each stage reads what it needs from MongoDB and writes its results back before it returns,
so every stage is idempotent: a job rerun after a lost worker picks up where the last one
stopped (finished calculations are never recomputed, generated candidates are deduplicated).
The jobflow jobs in :mod:`hullhunter.workflows.jobs` only call these.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import random
import tarfile
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from mongoengine import GridFSProxy
from pymatgen.core import Composition, Structure
from pymatgen.entries.computed_entries import ComputedStructureEntry
from pymongo import UpdateOne

from hullhunter import generators, models
from hullhunter.campaign_config import CampaignConfig
from hullhunter.documents import (
    Calculation,
    Campaign,
    Candidate,
    Material,
    ModelVersion,
    Round,
    chemsys_of,
    structure_dict,
)
from hullhunter.hull import HullSet, classification_metrics
from hullhunter.settings import get_settings
from hullhunter.workflows.oracles import OracleResult, get_oracle
from hullhunter.workflows.oracles.trajectory import frames_to_bytes

SEED_ROUND = 0


def load_campaign(name: str) -> tuple[Campaign, CampaignConfig]:
    """The campaign document and its validated configuration."""
    campaign = Campaign.objects(name=name).first()
    if campaign is None:
        raise ValueError(f"no campaign named '{name}': submit it first")
    return campaign, CampaignConfig.model_validate(campaign.config)


def candidate_id(campaign: str, structure: Structure) -> str:
    """Deterministic id: the same structure in the same campaign always gets the same id."""
    digest = hashlib.sha1(
        f"{campaign}|{[site.species_string for site in structure]}|"
        f"{structure.lattice.parameters}|{structure.frac_coords.round(4).tolist()}".encode()
    ).hexdigest()
    return f"{campaign}-{digest[:12]}"


# --- generate -------------------------------------------------------------------------


def generate(name: str, round_number: int) -> dict[str, int]:
    """Make this round's candidates and store the new ones; returns counts by generator."""
    _, config = load_campaign(name)
    space = config.chemical_space
    if round_number == SEED_ROUND:
        stream = _seed_candidates(config)
    else:
        stream = _structural_candidates(name, config)
        if "compositional" in config.pipelines:
            stream = itertools.chain(stream, _compositional_candidates(name, config))
    inside = (c for c in stream if space.allows({el.symbol for el in c.structure.composition}))
    return _store_new_candidates(name, round_number, inside)


def _seed_candidates(config: CampaignConfig) -> Iterator[generators.Candidate]:
    """The campaign's known crystals: the lowest few polymorphs of each element (the hull
    needs every elemental reference), then compounds, smallest cells first."""
    source = None if config.seeds.source == "builtin" else config.seeds.source
    seeds = generators.load_seeds(source, elements=config.chemical_space.all_elements)
    by_element: dict[str, list[generators.Seed]] = {}
    for seed in seeds:
        if len(seed.elements) == 1:
            by_element.setdefault(next(iter(seed.elements)), []).append(seed)
    elemental = [
        seed
        for polymorphs in by_element.values()
        for seed in sorted(
            polymorphs,
            key=lambda seed: (seed.metadata.get("energy_rank", 0), len(seed.structure)),
        )[: config.seeds.elemental_polymorphs]
    ]
    compounds = sorted(
        (seed for seed in seeds if len(seed.elements) > 1),
        key=lambda seed: (len(seed.elements), len(seed.structure)),
    )
    for seed in elemental + compounds[: max(config.seeds.max_seeds - len(elemental), 0)]:
        yield generators.Candidate(
            structure=seed.structure,
            generator="seed",
            parent_id=seed.id,
            params={"source": seed.source, "license": seed.license},
        )


def _hull_parents(name: str) -> list[generators.Seed]:
    return [
        generators.Seed(
            id=m.material_id, structure=m.get_structure(), source="campaign", license=""
        )
        for m in Material.objects(campaign=name, on_hull=True)
    ]


def _known_formulas(name: str) -> set[str]:
    return set(Calculation.objects(campaign=name).distinct("formula")) | set(
        Material.objects(campaign=name).distinct("formula")
    )


def _structural_candidates(name: str, config: CampaignConfig) -> Iterator[generators.Candidate]:
    parents = _hull_parents(name)
    known = _known_formulas(name)
    allowed = config.chemical_space.all_elements
    settings = config.generators
    if settings.substitution.enabled and settings.substitution.limit:
        yield from generators.substitute(
            parents,
            known_formulas=known,
            allowed_elements=allowed,
            threshold=settings.substitution.threshold,
            model=settings.substitution.model,
            limit=settings.substitution.limit,
        )
    if settings.saps.enabled and settings.saps.limit:
        yield from generators.saps(
            parents,
            known_formulas=known,
            allowed_elements=allowed,
            mode=settings.saps.mode,
            max_per_parent=settings.saps.max_per_parent,
            charge_balance=settings.saps.charge_balance,
            limit=settings.saps.limit,
        )
    if settings.prototypes.enabled and settings.prototypes.limit:
        yield from generators.decorate_prototypes(
            parents, allowed_elements=allowed, limit=settings.prototypes.limit
        )


def _compositional_candidates(name: str, config: CampaignConfig) -> Iterator[generators.Candidate]:
    """Formulas the compositional model puts near the hull, then AIRSS structures for each."""
    ensemble = latest_model(name, "compositional")
    if ensemble is None:
        return
    settings = config.generators.compositional
    known = _known_formulas(name)
    formulas = [
        composition
        for composition in generators.enumerate_compositions(
            config.chemical_space.all_elements,
            max_elements=config.chemical_space.max_elements,
            max_atoms=settings.max_atoms,
        )
        if composition.reduced_formula not in known
        and config.chemical_space.allows({el.symbol for el in composition.elements})
    ]
    if not formulas:
        return
    hull = build_hull(name)
    predicted = ensemble.predict(formulas, progress=False).energy_per_atom
    decomposition = hull.decomposition_energy(formulas, predicted)
    order = np.argsort(decomposition)
    chosen = [
        formulas[i] for i in order if decomposition[i] <= config.screening.max_decomposition_energy
    ][: settings.max_formulas]
    for composition in chosen:
        for candidate in generators.random_structures(
            composition, n=settings.structures_per_formula
        ):
            candidate.params["pipeline"] = "compositional"
            yield candidate


def _dedup_key(dedup: generators.Deduplicator, structure: Structure) -> str:
    """The deduplicator's bucket (the reduced formula) as a string that MongoDB indexes.

    Only candidates with the same key can duplicate each other, so each round loads just
    the earlier candidates of the formulas it generated.
    """
    (formula, _, _), _ = dedup.key(structure)
    return formula


def _store_new_candidates(
    name: str, round_number: int, stream: Iterable[generators.Candidate]
) -> dict[str, int]:
    """Insert candidates that no earlier candidate of the campaign duplicates."""
    candidates = list(stream)
    for candidate in candidates:
        candidate.structure.remove_oxidation_states()  # oracles and models take plain elements
    dedup = generators.Deduplicator()
    keys = [_dedup_key(dedup, c.structure) for c in candidates]
    for earlier in Candidate.objects(campaign=name, dedup_key__in=sorted(set(keys))).only(
        "candidate_id", "structure"
    ):
        dedup.add(earlier.get_structure(), earlier.candidate_id)
    identifiers = [candidate_id(name, c.structure) for c in candidates]
    stored = set(Candidate.objects(candidate_id__in=identifiers).distinct("candidate_id"))
    counts: Counter[str] = Counter()
    new_docs = []
    for candidate, key, identifier in zip(candidates, keys, identifiers, strict=True):
        if identifier in stored or dedup.add(candidate.structure, identifier) is not None:
            counts["duplicates"] += 1
            continue
        stored.add(identifier)
        composition = candidate.structure.composition
        elements = sorted(el.symbol for el in composition.elements)
        pipeline = candidate.params.get("pipeline", "structural")
        new_docs.append(
            Candidate(
                candidate_id=identifier,
                campaign=name,
                round=round_number,
                pipeline=pipeline,
                structure=structure_dict(candidate.structure),
                formula=composition.reduced_formula,
                chemsys=chemsys_of(composition),
                elements=elements,
                nelements=len(elements),
                nsites=len(candidate.structure),
                generator=candidate.generator,
                parent_id=candidate.parent_id,
                params=candidate.as_dict().get("params", {}),
                dedup_key=key,
            )
        )
        counts[candidate.generator] += 1
    if new_docs:
        Candidate.objects.insert(new_docs, load_bulk=False)
    return dict(counts)


# --- screen ---------------------------------------------------------------------------


def screen(name: str, round_number: int) -> list[str]:
    """Predict, score against the current hull and select candidates for the oracle.

    The pool is every candidate of the campaign not yet relaxed: this round's new ones and
    those earlier models rejected, re-scored by the newest model. GNoME's rule: predicted
    decomposition energy at most ``max_decomposition_energy``, the lowest-energy structure
    per composition, best first; an ``exploration_fraction`` of the places goes to random
    other candidates. Compositional (AIRSS) candidates were already filtered by the
    compositional model. A rerun after a lost job keeps what the first run selected.
    """
    _, config = load_campaign(name)
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
        chosen = _choose(name, config, pool, places)
    chosen_ids = {c.candidate_id for c in chosen}
    Candidate.objects(candidate_id__in=sorted(chosen_ids)).update(set__status="selected")
    rejected = [c.candidate_id for c in pool if c.candidate_id not in chosen_ids]
    Candidate.objects(candidate_id__in=rejected).update(set__status="rejected")
    return sorted(already | chosen_ids)


def _choose(
    name: str, config: CampaignConfig, pending: list[Candidate], places: int
) -> list[Candidate]:
    """When both pipelines ran, AIRSS candidates take at most half of the round's places."""
    compositional = [c for c in pending if c.pipeline == "compositional"]
    structural = [c for c in pending if c.pipeline != "compositional"]
    compositional = compositional[: (places + 1) // 2 if structural else places]
    places -= len(compositional)
    if not structural or places <= 0:
        return compositional
    ensemble = latest_model(name, "structural")
    if ensemble is None:
        raise ValueError(f"campaign '{name}' has no trained model: the seed round must finish")
    ensemble.config.torch_threads = get_settings().torch_threads  # this worker's setting
    structures = [c.get_structure() for c in structural]
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
            structural, prediction.energy_per_atom, prediction.iqr, decomposition, strict=True
        )
    ]
    Candidate._get_collection().bulk_write(updates, ordered=False)  # one round trip, not N
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


# --- relax ----------------------------------------------------------------------------


def relax(name: str, round_number: int, candidate_ids: list[str]) -> dict[str, int]:
    """Relax one batch with the campaign's oracle, saving each result as it finishes.

    Candidates that already have a calculation by this oracle (a rerun after a lost worker)
    are skipped, so nothing finished is computed twice.
    """
    _, config = load_campaign(name)
    oracle_name = config.oracle.name
    finished = Calculation.objects(
        campaign=name, oracle=oracle_name, candidate_id__in=candidate_ids
    ).only("candidate_id", "state")
    done = {calc.candidate_id: calc.state for calc in finished}
    by_status: dict[str, list[str]] = {}
    for identifier, state in done.items():
        by_status.setdefault(_candidate_status(state), []).append(identifier)
    for status, identifiers in by_status.items():  # a worker killed between two writes
        Candidate.objects(candidate_id__in=identifiers, status__ne=status).update(
            set__status=status
        )
    todo = [
        c
        for c in Candidate.objects(candidate_id__in=candidate_ids).order_by("candidate_id")
        if c.candidate_id not in done
    ]
    counts = Counter({"skipped_finished": len(done)})
    if not todo:
        return dict(counts)
    Candidate.objects(candidate_id__in=[c.candidate_id for c in todo]).update(
        set__status="relaxing"
    )
    oracle = get_oracle(oracle_name, **oracle_settings(config, name, round_number))

    def save(result: OracleResult) -> None:
        save_calculation(name, round_number, result)
        counts[_calculation_state(result)] += 1

    oracle.relax([c.get_structure() for c in todo], [c.candidate_id for c in todo], on_result=save)
    return dict(counts)


def oracle_settings(config: CampaignConfig, name: str, round_number: int) -> dict[str, Any]:
    """The keyword arguments of ``get_oracle`` for this campaign's round."""
    settings = get_settings()
    if config.oracle.name == "vasp":
        run_dir = settings.runs_dir / name / f"round-{round_number}"
        run_dir.mkdir(parents=True, exist_ok=True)
        return {
            "root_dir": run_dir,
            "maker": config.oracle.vasp_maker,
            "prerelax": config.oracle.vasp_prerelax,
            "user_incar_settings": config.oracle.vasp_incar or None,
        }
    return {
        "fmax": config.oracle.fmax,
        "max_steps": config.oracle.max_steps,
        "device": settings.device,
        "threads": settings.torch_threads,
    }


def _calculation_state(result: OracleResult) -> str:
    if result.error:
        return "failed"
    return "completed" if result.converged else "unconverged"


def save_calculation(name: str, round_number: int, result: OracleResult) -> None:
    """Upsert the result as the candidate's Calculation; its frames go to GridFS."""
    state = _calculation_state(result)
    composition = Composition(result.formula) if result.formula else None
    calculation = Calculation.objects(
        campaign=name, candidate_id=result.candidate_id, oracle=result.oracle
    )
    calculation.update_one(
        upsert=True,
        set__round=round_number,
        set__oracle_version=result.oracle_version,
        set__state=state,
        set__formula=composition.reduced_formula if composition else None,
        set__chemsys=chemsys_of(composition) if composition else None,
        set__elements=sorted(el.symbol for el in composition.elements) if composition else [],
        set__energy=_finite_or_none(result.energy),
        set__energy_per_atom=_finite_or_none(result.energy_per_atom),
        set__structure=structure_dict(result.structure) if result.structure else {},
        set__converged=bool(result.converged),
        set__n_steps=result.n_steps,
        set__wall_time_s=result.wall_time_s,
        set__error=result.error,
        set__corrections=list(result.corrections or []),
        set__directory=result.directory,
        set__n_frames=0,
        set__created_at=datetime.now(UTC),
    )
    Candidate.objects(candidate_id=result.candidate_id).update_one(
        set__status=_candidate_status(state)
    )
    if result.frames:  # last: a worker killed here loses only the frames, never the result
        trajectory = GridFSProxy(collection_name="trajectories")
        trajectory.put(
            frames_to_bytes(result.frames),
            content_type="application/x-npz",
            filename=f"{name}-{result.candidate_id}-{result.oracle}",
        )
        calculation.update_one(
            __raw__={"$set": {"trajectory": trajectory.grid_id, "n_frames": len(result.frames)}}
        )


def _candidate_status(calculation_state: str) -> str:
    return "failed" if calculation_state == "failed" else "relaxed"


def _finite_or_none(value: float | None) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


# --- hull -----------------------------------------------------------------------------


def _entry(calc: Calculation) -> ComputedStructureEntry:
    structure = calc.get_structure()
    return ComputedStructureEntry(
        structure,
        calc.energy_per_atom * len(structure),
        entry_id=calc.candidate_id,
        data={"round": calc.round},
    )


def _usable_calculations(name: str, up_to_round: int | None = None) -> list[Calculation]:
    """Converged calculations: the only ones counted as evidence of (in)stability."""
    query = {"campaign": name, "state": "completed", "energy_per_atom__ne": None}
    if up_to_round is not None:
        query["round__lte"] = up_to_round
    return list(Calculation.objects(**query).order_by("round", "candidate_id"))


def build_hull(name: str, up_to_round: int | None = None) -> HullSet:
    """The campaign's hull: seed calculations as the reference, then each round in order."""
    return _hull_from(name, _usable_calculations(name, up_to_round))


def _hull_from(name: str, calculations: list[Calculation]) -> HullSet:
    seeds = [c for c in calculations if c.round == SEED_ROUND]
    if not seeds:
        raise ValueError(f"campaign '{name}' has no relaxed seeds yet: the seed round must run")
    hull = HullSet([_entry(c) for c in seeds])
    rounds = sorted({c.round for c in calculations if c.round != SEED_ROUND})
    for number in rounds:
        hull.add([_entry(c) for c in calculations if c.round == number], round=number)
    return hull


def update_hull(name: str, round_number: int) -> dict[str, Any]:
    """Place this round's results on the hull; refresh Material documents and round metrics."""
    usable = _usable_calculations(name, round_number)
    hull = _hull_from(name, usable)
    calculations = {c.candidate_id: c for c in usable}
    candidates = {
        c.candidate_id: c
        for c in Candidate.objects(campaign=name, candidate_id__in=list(calculations))
    }
    records = {record.entry_id: record for record in hull.records()}
    for entry_id, record in records.items():
        calc = calculations[entry_id]
        is_seed = calc.round == SEED_ROUND
        if not (is_seed or record.hit or record.on_hull):
            continue
        structure = calc.get_structure()
        elements = sorted(el.symbol for el in structure.composition.elements)
        candidate = candidates.get(entry_id)
        Material.objects(campaign=name, material_id=entry_id).update_one(
            upsert=True,
            set__formula=calc.formula,
            set__chemsys=calc.chemsys,
            set__elements=elements,
            set__nelements=len(elements),
            set__structure=calc.structure,
            set__energy_per_atom=calc.energy_per_atom,
            set__decomposition_energy=record.decomposition_energy,
            set__is_seed=is_seed,
            set__round_found=calc.round,
            set__generator=candidate.generator if candidate else None,
            set__stable_vs_reference=bool(record.stable_vs_reference),
            set__on_hull=bool(record.on_hull),
            set__updated_at=datetime.now(UTC),
        )
    metrics = _round_metrics(name, round_number, hull)
    metrics = mongo_safe(metrics)
    Round.objects(campaign=name, number=round_number).update_one(
        upsert=True, set__metrics=metrics, set__status="relaxed"
    )
    return metrics


def _round_metrics(name: str, round_number: int, hull: HullSet) -> dict[str, Any]:
    per_round = {m["round"]: m for m in hull.round_metrics()}
    metrics: dict[str, Any] = dict(per_round.get(round_number, {}))
    calcs = Calculation.objects(campaign=name, round=round_number)
    metrics["calculations"] = dict(Counter(c.state for c in calcs))
    metrics["on_hull_total"] = Material.objects(campaign=name, on_hull=True).count()
    metrics["new_on_hull_total"] = Material.objects(
        campaign=name, on_hull=True, is_seed=False
    ).count()
    if round_number != SEED_ROUND:
        metrics.update(_model_error(name, round_number, hull))
    return metrics


def _model_error(name: str, round_number: int, hull: HullSet) -> dict[str, Any]:
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


def mongo_safe(value: Any) -> Any:
    """Plain types MongoDB stores: string keys, Python floats, None for NaN."""
    if isinstance(value, dict):
        return {str(key): mongo_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [mongo_safe(item) for item in value]
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    return value


# --- retrain --------------------------------------------------------------------------


def model_config(config: CampaignConfig) -> models.GNoMEConfig:
    """The campaign's network settings: a preset with the campaign's epochs and seed."""
    overrides = {
        "epochs": config.model.epochs,
        "seed": config.model.seed,
        "device": get_settings().device,
        "torch_threads": get_settings().torch_threads,
    }
    if config.model.preset == "small":
        return models.GNoMEConfig.small(**overrides)
    return models.GNoMEConfig(**overrides)


def retrain(name: str, round_number: int) -> dict[str, Any]:
    """Train new ensembles (warm start from the last) on every converged oracle result."""
    _, config = load_campaign(name)
    calculations = _usable_calculations(name, round_number)
    hull = _hull_from(name, calculations)
    elemental = {el: float(e.energy_per_atom) for el, e in hull.elemental_references.items()}
    structures = [c.get_structure() for c in calculations]
    energies = [c.energy_per_atom for c in calculations]
    previous = latest_model(name, "structural")
    ensemble, metrics = models.train_ensemble(
        structures,
        energies,
        elemental,
        config=model_config(config),
        n_models=config.model.n_models,
        init_from=previous,
    )
    versions = {"structural": _save_model(name, round_number, ensemble, metrics, len(structures))}
    if "compositional" in config.pipelines:
        lowest: dict[str, tuple[Composition, float]] = {}
        for calc in calculations:
            if calc.formula not in lowest or calc.energy_per_atom < lowest[calc.formula][1]:
                lowest[calc.formula] = (Composition(calc.formula), calc.energy_per_atom)
        comp_ensemble, comp_metrics = models.train_composition_ensemble(
            [c for c, _ in lowest.values()],
            [e for _, e in lowest.values()],
            elemental,
            config=model_config(config),
            n_models=config.model.n_models,
            init_from=latest_model(name, "compositional"),
        )
        versions["compositional"] = _save_model(
            name, round_number, comp_ensemble, comp_metrics, len(lowest)
        )
    return versions


def _save_model(name: str, round_number: int, ensemble, metrics: dict, n_train: int) -> int:
    """Store an ensemble's checkpoint files in GridFS as the next ModelVersion."""
    kind = ensemble.kind
    version = next_model_version(name, kind)
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory() as folder:
        path = ensemble.save(Path(folder) / "model.pt")
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            for member in sorted(Path(path).parent.iterdir()):
                archive.add(member, arcname=member.name)
    buffer.seek(0)
    doc = ModelVersion(
        campaign=name,
        kind=kind,
        version=version,
        round=round_number,
        n_train=n_train,
        metrics=mongo_safe(metrics),
        hyperparameters=ensemble.config.to_dict(),
    )
    doc.weights.put(buffer, content_type="application/gzip", filename=f"{name}-{kind}-{version}")
    doc.save()
    return version


def next_model_version(name: str, kind: str) -> int:
    """The version number the campaign's next model of ``kind`` gets (1 for the first)."""
    last = ModelVersion.objects(campaign=name, kind=kind).order_by("-version").first()
    return (last.version + 1) if last else 1


def latest_model(name: str, kind: str):
    """The newest ensemble of ``kind`` for the campaign, loaded from GridFS, or None."""
    doc = ModelVersion.objects(campaign=name, kind=kind).order_by("-version").first()
    if doc is None:
        return None
    with tempfile.TemporaryDirectory() as folder:
        with tarfile.open(fileobj=io.BytesIO(doc.weights.read()), mode="r:gz") as archive:
            archive.extractall(folder, filter="data")
        return models.load_ensemble(Path(folder) / "model.pt")


def batches(ids: list[str], size: int) -> list[list[str]]:
    """Split candidate ids into relaxation batches of at most ``size``."""
    iterator = iter(ids)
    return [batch for batch in iter(lambda: list(itertools.islice(iterator, size)), [])]
