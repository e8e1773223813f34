"""Pretraining the screening prior: label known crystals, train both ensembles, write a card.

GNoME's first model was trained on the Materials Project; hullhunter's prior is trained on
the crystals it ships (:func:`hullhunter.generators.load_seeds`) plus any user folder,
labelled by an oracle (CHGNet single points by default, another registered oracle's
relaxations) or by the energies given in the data. Formation energies are taken against
the lowest-energy labelled polymorph of each element, and the composition-hash split holds
out every polymorph of 15% of the formulas for the card's held-out figures. A structure
that cannot be labelled is reported with its reason and skipped, never a crash.
"""

from __future__ import annotations

import gzip
import json
import platform
import re
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monty.json import MontyDecoder
from pymatgen.core import Structure
from rich.progress import Progress
from threadpoolctl import threadpool_limits

from hullhunter import __version__, hull, models
from hullhunter.generators import load_seeds
from hullhunter.models.prior import (
    CARD_FILE,
    CARD_FORMAT,
    COMPOSITIONAL_FILE,
    ORACLE_ENERGY_SCALE,
    STRUCTURAL_FILE,
)
from hullhunter.workflows.oracles.base import installed_version
from hullhunter.workflows.oracles.result import failure_reason, structure_problem
from hullhunter.workflows.pretrain_metrics import held_out_metrics

LABELS_FILE = "labels.json.gz"
DATA_ORACLE = "data"
SHIPPED_SOURCE = "hullhunter shipped seeds"
GENERATED_SOURCE = "generated candidates"
"""Source of the generated candidates' relaxations (:mod:`.pretrain_generated`)."""
DATA_LICENSES = {
    "shipped": "Materials Project data, CC BY 4.0 (via matbench/matcalc and pymatgen); "
    "AFLOW prototypes via pymatgen (MIT)",
    "code": "MIT",
}


@dataclass
class Sample:
    """One crystal to learn from; ``energy_per_atom`` is its label once it has one (eV)."""

    id: str
    structure: Structure
    source: str
    energy_per_atom: float | None = None


@dataclass
class Skipped:
    """A crystal left out of the prior, and why."""

    id: str
    source: str
    reason: str


@dataclass
class LabelledSet:
    """Labelled samples, skipped ones with reasons, and how the labels were made."""

    samples: list[Sample]
    skipped: list[Skipped]
    oracle: str
    oracle_version: str
    method: str
    energy_scale: str = ORACLE_ENERGY_SCALE
    sources: dict[str, int] = field(default_factory=dict)


def gather_samples(
    shipped: bool = True, extra: Path | None = None, max_atoms: int | None = 80
) -> tuple[list[Sample], list[Skipped]]:
    """The shipped seeds and/or a user's CIF/POSCAR/JSON file or folder, capped in size.

    JSON records may carry energies: ``energy_per_atom`` or ``energy`` beside
    ``structure``, or pymatgen ``ComputedStructureEntry`` dicts.
    """
    samples: list[Sample] = []
    skipped: list[Skipped] = []
    if shipped:
        samples += [Sample(s.id, s.structure, SHIPPED_SOURCE) for s in load_seeds()]
    if extra is not None:
        if not extra.exists():
            raise ValueError(f"structure path {extra} does not exist; give a file or folder")
        files = sorted(p for p in extra.iterdir() if p.is_file()) if extra.is_dir() else [extra]
        for path in files:
            try:
                samples += _read_structures(path)
            except Exception as exc:  # one unreadable file is reported, the rest go on
                skipped.append(Skipped(path.name, str(path), f"unreadable: {failure_reason(exc)}"))
    if not samples:
        raise ValueError("no structures to pretrain on; keep the shipped seeds or give a folder")
    kept = []
    for sample in samples:
        if max_atoms is not None and len(sample.structure) > max_atoms:
            reason = f"{len(sample.structure)} atoms > max_atoms={max_atoms}"
            skipped.append(Skipped(sample.id, sample.source, reason))
        else:
            kept.append(sample)
    return kept, skipped


def _read_structures(path: Path) -> list[Sample]:
    """Samples from one user file, with energies where a JSON record gives them."""
    if not path.name.lower().endswith((".json", ".json.gz")):
        return [Sample(s.id, s.structure, str(path)) for s in load_seeds(path)]
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        data = json.load(handle)
    items = data if isinstance(data, list) else [data]
    stem = path.name.split(".")[0]
    samples = []
    for i, item in enumerate(items):
        default_id = f"{stem}#{i}" if len(items) > 1 else stem
        if "Entry" in str(item.get("@class", "")):
            entry = MontyDecoder().process_decoded(item)
            sample_id = str(getattr(entry, "entry_id", None) or default_id)
            samples.append(Sample(sample_id, entry.structure, str(path), entry.energy_per_atom))
            continue
        record = item if "structure" in item else {"structure": item}
        structure = Structure.from_dict(record["structure"])
        energy = record.get("energy_per_atom")
        if energy is None and record.get("energy") is not None:
            energy = record["energy"] / len(structure)
        sample_id = str(record.get("id", default_id))
        samples.append(
            Sample(sample_id, structure, str(path), None if energy is None else float(energy))
        )
    return samples


def label_from_data(
    samples: Sequence[Sample], oracle: str = DATA_ORACLE, energy_scale: str = ORACLE_ENERGY_SCALE
) -> LabelledSet:
    """Use the energies the data give; samples without one are skipped.

    ``oracle`` names what computed them (e.g. "vasp") and ``energy_scale`` their scale, as
    recorded in the card and checked when a campaign starts from the prior.
    """
    labelled, skipped = [], []
    for sample in samples:
        energy = sample.energy_per_atom
        if energy is None or not np.isfinite(energy):
            reason = "no energy in the data (give energy_per_atom, energy or a computed entry)"
            skipped.append(Skipped(sample.id, sample.source, reason))
        else:
            labelled.append(sample)
    return LabelledSet(labelled, skipped, oracle, "given in the data", "given", energy_scale)


def label_with_chgnet(
    samples: Sequence[Sample],
    model: str | None = None,
    batch_size: int = 32,
    threads: int = 1,
    progress: bool = True,
) -> LabelledSet:
    """CHGNet single-point energies of the structures as given (MP structures are relaxed).

    Each structure is checked (order, elements, atom distances) and converted alone, so a
    bad one is skipped with its reason; a batch that fails is retried one by one.
    """
    from hullhunter.workflows.oracles.forcefield import DEFAULT_MODELS, ForceFieldOracle

    oracle = ForceFieldOracle("chgnet", model=model, threads=threads)
    chgnet = oracle.evaluator.model
    labelled: list[Sample] = []
    skipped: list[Skipped] = []
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with (
            threadpool_limits(limits=1, user_api="blas"),
            Progress(disable=not progress) as bar,
            warnings.catch_warnings(),
        ):
            # noble gases have no Pauling electronegativity; pymatgen warns and uses NaN
            warnings.filterwarnings("ignore", message="No Pauling electronegativity")
            task = bar.add_task("CHGNet single points", total=len(samples))
            for start in range(0, len(samples), batch_size):
                chunk = samples[start : start + batch_size]
                graphs, ready = [], []
                for sample in chunk:
                    problem = structure_problem(sample.structure, oracle.known_elements)
                    if problem is None:
                        try:
                            graphs.append(chgnet.graph_converter(sample.structure))
                            ready.append(sample)
                            continue
                        except Exception as exc:  # e.g. an isolated atom: skipped alone
                            problem = failure_reason(exc)
                    skipped.append(Skipped(sample.id, sample.source, problem))
                for sample, outcome in zip(ready, _energies(chgnet, graphs), strict=True):
                    if isinstance(outcome, float):
                        labelled.append(Sample(sample.id, sample.structure, sample.source, outcome))
                    else:
                        skipped.append(Skipped(sample.id, sample.source, outcome))
                bar.advance(task, len(chunk))
    finally:
        torch.set_num_threads(previous)
    version = f"chgnet {installed_version('chgnet')} model {model or DEFAULT_MODELS['chgnet']}"
    return LabelledSet(labelled, skipped, "chgnet", version, "single point")


def _energies(chgnet: Any, graphs: list[Any]) -> list[float | str]:
    """Energy per atom of each graph, or the reason it failed (a failed batch is split)."""
    if not graphs:
        return []
    try:
        with torch.no_grad():
            predictions = chgnet.predict_graph(graphs, task="e", batch_size=len(graphs))
        predictions = [predictions] if isinstance(predictions, dict) else predictions
        energies = [float(p["e"]) for p in predictions]
    except Exception as exc:
        if len(graphs) == 1:
            return [failure_reason(exc)]
        return [e for graph in graphs for e in _energies(chgnet, [graph])]
    return [e if np.isfinite(e) else f"non-finite CHGNet energy ({e})" for e in energies]


def label_with_oracle(samples: Sequence[Sample], oracle: Any) -> LabelledSet:
    """Relax every structure with a campaign oracle; failed relaxations are skipped."""
    results = oracle.relax([s.structure for s in samples], [s.id for s in samples])
    labelled, skipped = [], []
    for sample, result in zip(samples, results, strict=True):
        if result.ok:
            labelled.append(
                Sample(sample.id, result.structure, sample.source, result.energy_per_atom)
            )
        else:
            skipped.append(Skipped(sample.id, sample.source, str(result.error)))
    return LabelledSet(labelled, skipped, oracle.name, oracle.version, "relaxation")


def save_labels(labelled: LabelledSet, path: Path) -> Path:
    """Write the labels (ids, sources, energies, skipped reasons) as gzipped JSON."""
    payload = {
        "oracle": labelled.oracle,
        "oracle_version": labelled.oracle_version,
        "method": labelled.method,
        "energy_scale": labelled.energy_scale,
        "labels": [[s.id, s.source, s.energy_per_atom] for s in labelled.samples],
        "skipped": [asdict(s) for s in labelled.skipped],
    }
    with gzip.GzipFile(path, "wb", compresslevel=9, mtime=0) as handle:
        handle.write(json.dumps(payload, separators=(",", ":")).encode())
    return path


def load_labels(path: Path, samples: Sequence[Sample]) -> LabelledSet:
    """Labels written by :func:`save_labels`, joined to ``samples`` by id (and source)."""
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        payload = json.load(handle)
    by_key = {(s.id, s.source): s for s in samples}
    labelled, skipped = [], [Skipped(**s) for s in payload["skipped"]]
    for sample_id, source, energy in payload["labels"]:
        sample = by_key.get((sample_id, source))
        if sample is None:
            skipped.append(Skipped(sample_id, source, "labelled but no longer in the data"))
        else:
            labelled.append(Sample(sample_id, sample.structure, source, float(energy)))
    return LabelledSet(
        labelled,
        skipped,
        payload["oracle"],
        payload["oracle_version"],
        payload["method"],
        payload["energy_scale"],
    )


def elemental_references(samples: Sequence[Sample]) -> dict[str, tuple[str, float]]:
    """Lowest labelled energy per atom of each element's polymorphs: ``{el: (id, eV)}``."""
    best: dict[str, tuple[str, float]] = {}
    for sample in samples:
        composition = sample.structure.composition
        if composition.is_element and sample.energy_per_atom is not None:
            symbol = composition.elements[0].symbol
            if symbol not in best or sample.energy_per_atom < best[symbol][1]:
                best[symbol] = (sample.id, sample.energy_per_atom)
    return best


def with_references(labelled: LabelledSet) -> tuple[LabelledSet, dict[str, float]]:
    """Drop samples with an element that has no reference or an absurd formation energy."""
    references = {el: e for el, (_, e) in elemental_references(labelled.samples).items()}
    kept, skipped = [], list(labelled.skipped)
    for sample in labelled.samples:
        composition = sample.structure.composition
        missing = sorted({el.symbol for el in composition.elements} - set(references))
        if missing:
            reason = f"no labelled elemental polymorph of {', '.join(missing)} for the reference"
            skipped.append(Skipped(sample.id, sample.source, reason))
            continue
        formation = sample.energy_per_atom - float(
            models.ensemble.reference_energies([composition], references)[0]
        )
        if abs(formation) > hull.MAX_ABS_FORMATION_ENERGY:
            reason = f"formation energy {formation:+.2f} eV/atom is unphysical"
            skipped.append(Skipped(sample.id, sample.source, reason))
            continue
        kept.append(sample)
    sources: dict[str, int] = {}
    for sample in kept:
        sources[sample.source] = sources.get(sample.source, 0) + 1
    filtered = LabelledSet(
        kept,
        skipped,
        labelled.oracle,
        labelled.oracle_version,
        labelled.method,
        labelled.energy_scale,
        sources,
    )
    return filtered, references


def lowest_per_formula(samples: Sequence[Sample]) -> dict[str, float]:
    """Lowest labelled energy per atom of each reduced formula (the compositional target)."""
    lowest: dict[str, float] = {}
    for sample in samples:
        formula = sample.structure.composition.reduced_formula
        if formula not in lowest or sample.energy_per_atom < lowest[formula]:
            lowest[formula] = sample.energy_per_atom
    return lowest


def pretrain(
    labelled: LabelledSet,
    out: Path,
    config: models.GNoMEConfig,
    n_models: int = 3,
    compositional: bool = True,
    name: str = "prior",
    command: str | None = None,
    max_atoms: int | None = None,
    generated: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train the structural (and compositional) prior on ``labelled``; write it and its card.

    ``generated`` describes generated candidates among the samples (their relaxations'
    summary, recorded in the card). Returns the model card, also written to ``out/card.json``.
    """
    started = time.perf_counter()
    if not config.test_split:
        raise ValueError("a prior keeps the composition-hash test split; set test_split=True")
    usable, references = with_references(labelled)
    if not usable.samples:
        raise ValueError("no labelled structure is usable (see the skipped reasons)")
    out.mkdir(parents=True, exist_ok=True)
    structures = [s.structure for s in usable.samples]
    energies = [s.energy_per_atom for s in usable.samples]
    structural, structural_metrics = models.train_ensemble(
        structures, energies, references, config=config, n_models=n_models
    )
    structural.metadata["prior"] = name
    structural.save(out / STRUCTURAL_FILE)
    structural_metrics.update(held_out_metrics(structural, usable.samples, GENERATED_SOURCE))
    metrics = {"structural": structural_metrics}
    if compositional:
        lowest = lowest_per_formula(usable.samples)
        composition_ensemble, composition_metrics = models.train_composition_ensemble(
            list(lowest), list(lowest.values()), references, config=config, n_models=n_models
        )
        composition_ensemble.metadata["prior"] = name
        composition_ensemble.save(out / COMPOSITIONAL_FILE)
        metrics["compositional"] = composition_metrics
    formulas = [s.structure.composition.reduced_formula for s in usable.samples]
    is_train = models.composition_hash_split(formulas)
    card = {
        "format": CARD_FORMAT,
        "name": name,
        "created_with": f"hullhunter {__version__}, torch {torch.__version__}, "
        f"python {platform.python_version()}",
        "command": command,
        "max_atoms": max_atoms,
        "data": {"sources": usable.sources, "generated": generated},
        "labels": {
            "oracle": usable.oracle,
            "oracle_version": usable.oracle_version,
            "method": usable.method,
            "energy_scale": usable.energy_scale,
            "target": "formation energy per atom against the lowest-energy labelled "
            "polymorph of each element",
            "elemental_references": {el: e for el, e in sorted(references.items())},
        },
        "counts": {
            "labelled": len(usable.samples),
            "skipped": len(usable.skipped),
            "skipped_by_reason": reason_counts(usable.skipped),
            "formulas": len(set(formulas)),
        },
        "split": {
            "method": "composition hash: MD5(reduced formula) mod 100 < 85 trains; every "
            "polymorph of a formula is on one side",
            "n_train_structures": int(is_train.sum()),
            "n_test_structures": int((~is_train).sum()),
            "validation": f"{config.val_fraction:.0%} of training formulas by a second hash "
            "(early stopping)",
        },
        "model": {"preset_config": config.to_dict(), "n_models": n_models},
        "metrics": metrics,
        "units": "eV/atom",
        "licence": {"data": _data_licence(usable.sources), "code": DATA_LICENSES["code"]},
        "wall_time_s": time.perf_counter() - started,
    }
    (out / CARD_FILE).write_text(json.dumps(card, indent=2, default=float) + "\n")
    return card


def _data_licence(sources: dict[str, int]) -> str:
    """The licence line of the training data: the shipped seeds' and/or the user's."""
    parts = [DATA_LICENSES["shipped"]] if SHIPPED_SOURCE in sources else []
    if set(sources) - {SHIPPED_SOURCE}:
        parts.append("user-supplied structures (check their source's terms)")
    return "; ".join(parts)


def reason_counts(skipped: Sequence[Skipped]) -> dict[str, int]:
    """Skipped structures counted by reason (numbers replaced by N, so sizes group)."""
    counts: dict[str, int] = {}
    for item in skipped:
        key = re.sub(r"[-+]?\d+(\.\d+)?", "N", item.reason.split(";")[0]).strip()[:80]
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def label(
    samples: Sequence[Sample],
    oracle: str = "chgnet",
    threads: int = 1,
    progress: bool = True,
) -> LabelledSet:
    """Label ``samples`` with ``oracle``: "chgnet" single points, "data" (the energies
    given, see :func:`label_from_data`), or any registered oracle's relaxations at its
    default settings."""
    if oracle == "chgnet":
        return label_with_chgnet(samples, threads=threads, progress=progress)
    if oracle == DATA_ORACLE:
        return label_from_data(samples)
    from hullhunter.workflows.oracles.registry import get_oracle

    return label_with_oracle(samples, get_oracle(oracle))
