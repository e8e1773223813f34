"""Generated candidates for the prior: what a campaign's screen meets, relaxed by the oracle.

A prior trained on known crystals alone has seen only structures at a minimum, most near the
hull. The candidates a campaign generates are neither, and that prior over-binds them:
on candidates of Li-Co-O and Na-Mn-O (relaxed with CHGNet, ternaries withheld) it put
prototype decorations 0.42 eV/atom and SAPS products 0.23 eV/atom below the energies they
relaxed to, so the screen's first picks were mostly those. GNoME's models learned from their
own candidates' relaxations, round after round. This module makes such examples up front:
the campaign generators run on chemical systems that no shipped example or benchmark uses,
a sample of each generator's products is relaxed by an oracle, and each relaxation gives two
training pairs, as a campaign with ``model.learn_generated`` makes them: the structure as
generated and the relaxed one, both labelled with the relaxed energy.

The relaxations are written to one gzipped JSON file after each system, so a rerun goes on
from the first system not yet done.
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pymatgen.core import Structure

from hullhunter.generators import (
    GENERATORS,
    Candidate,
    Deduplicator,
    GenerationContext,
    Seed,
    load_seeds,
)
from hullhunter.workflows.pretrain import GENERATED_SOURCE, Sample

GENERATED_FILE = "generated.json.gz"
GENERATED_FORMAT = "hullhunter-generated-relaxations/1"

DEFAULT_SYSTEMS = (
    "Li-Fe-O",
    "Na-Fe-O",
    "Li-Ni-O",
    "Na-Ni-O",
    "K-Ti-O",
    "Mg-Cr-O",
    "Li-V-O",
    "Ca-Fe-O",
    "Na-Nb-O",
    "Li-Cu-O",
    "Li-Ti-S",
    "Na-Cu-S",
    "K-Al-F",
    "Li-Zn-N",
)
"""Ternary systems for the shipped prior's generated examples. None holds Mn or Co, so no
campaign of the shipped examples (Li-Na-Mn-O) and no space of ``benchmarks/flywheel.py``
(Li-Co-O, Li-Mn-O, Na-Mn-O) is learned from its own candidates before it runs."""

RUNTIME_SETTINGS = {"device", "threads", "batch_size", "record_frames", "progress"}
"""Oracle settings that change how fast it runs, not the energies it gives."""

POOL_PER_GENERATOR = 300
"""Products each generator makes per system before the sample is drawn from them."""


def sample_candidates(
    system: str,
    per_generator: int,
    known_world: Sequence[Seed],
    seed: int = 0,
    max_parent_sites: int = 24,
) -> list[Candidate]:
    """Up to ``per_generator`` distinct products of each registered generator whose elements
    are exactly ``system``'s, drawn at random (seeded by the system) from its first
    :data:`POOL_PER_GENERATOR`; parents from ``known_world``, as a campaign takes them."""
    elements = set(system.split("-"))
    dedup = Deduplicator()
    accepted: dict[int, Candidate] = {}  # a generator and the registry may both ask

    def inside_and_new(candidate: Candidate) -> bool:
        if accepted.get(id(candidate)) is candidate:
            return True
        structure = candidate.structure
        if {el.symbol for el in structure.composition.elements} != elements:
            return False
        structure.remove_oxidation_states()
        if dedup.add(structure, f"{system}:{len(dedup)}") is not None:
            return False
        accepted[id(candidate)] = candidate
        return True

    context = GenerationContext(
        parents=[],
        allowed_elements=sorted(elements),
        accept=inside_and_new,
        known_world=list(known_world),
    )
    rng = random.Random(f"{system}|{seed}")
    chosen: list[Candidate] = []
    for settings_class in GENERATORS.values():
        settings = settings_class(limit=POOL_PER_GENERATOR, max_parent_sites=max_parent_sites)
        products = list(settings.candidates(context))
        chosen += rng.sample(products, min(per_generator, len(products)))
    return chosen


def read_generated(path: Path) -> dict[str, Any]:
    """The relaxations written so far (an empty record set when there is no file yet)."""
    if not path.is_file():
        return {"format": GENERATED_FORMAT, "oracle": None, "systems": {}, "records": []}
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        payload = json.load(handle)
    if payload.get("format") != GENERATED_FORMAT:
        raise ValueError(f"{path} is not a file of generated relaxations; move it or pick --out")
    return payload


def _write(path: Path, payload: dict[str, Any]) -> None:
    partial = path.with_name(path.name + ".partial")
    with gzip.GzipFile(partial, "wb", compresslevel=9, mtime=0) as handle:
        handle.write(json.dumps(payload, separators=(",", ":")).encode())
    partial.replace(path)  # a crash while writing keeps the last complete file


def relax_generated(
    path: Path,
    oracle: Any,
    systems: Sequence[str] = DEFAULT_SYSTEMS,
    per_generator: int = 6,
    known_world: Sequence[Seed] | None = None,
    report: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Sample and relax each system's candidates with ``oracle``; returns the file's payload.

    Systems already in the file are kept as they are. A file made with another oracle or
    sample size is refused, so one file never mixes two kinds of labels.
    """
    payload = read_generated(path)
    settings = {"oracle": oracle.name, "version": oracle.version}
    settings |= {k: v for k, v in oracle.settings.items() if k not in RUNTIME_SETTINGS}
    settings["per_generator"] = per_generator
    if payload["oracle"] not in (None, settings):
        raise ValueError(
            f"{path} was made with {payload['oracle']}; relax with the same settings "
            "or write to another folder"
        )
    payload["oracle"] = settings
    world = load_seeds() if known_world is None else known_world
    for system in systems:
        if system in payload["systems"]:
            continue
        candidates = sample_candidates(system, per_generator, world)
        ids = [f"{system}:{index}" for index in range(len(candidates))]
        results = oracle.relax([c.structure for c in candidates], ids) if candidates else []
        for identifier, candidate, result in zip(ids, candidates, results, strict=True):
            payload["records"].append(
                {
                    "id": identifier,
                    "system": system,
                    "generator": candidate.generator,
                    "parent_id": candidate.parent_id,
                    "generated": candidate.structure.as_dict(),
                    "relaxed": result.structure.as_dict() if result.ok else None,
                    "energy_per_atom": result.energy_per_atom if result.ok else None,
                    "converged": result.converged,
                    "error": None if result.ok else str(result.error),
                }
            )
        relaxed = sum(result.ok for result in results)
        payload["systems"][system] = {"candidates": len(candidates), "relaxed": relaxed}
        _write(path, payload)
        report(f"{system}: {relaxed} of {len(candidates)} candidates relaxed")
    return payload


def summary(payload: dict[str, Any]) -> dict[str, Any]:
    """What the model card records of the generated relaxations a prior learned from."""
    return {
        "file": GENERATED_FILE,
        "labels": payload["oracle"],
        "systems": payload["systems"],
        "relaxed": sum(record["energy_per_atom"] is not None for record in payload["records"]),
        "pairs": "each relaxed candidate twice: as generated and as relaxed, with its relaxed "
        "energy",
    }


def generated_samples(payload: dict[str, Any]) -> list[Sample]:
    """Two training samples per relaxed candidate of ``payload`` (:func:`read_generated`): as
    generated and as relaxed, both labelled with the relaxed energy per atom (eV)."""
    samples = []
    for record in payload["records"]:
        energy = record["energy_per_atom"]
        if energy is None:
            continue
        for form in ("generated", "relaxed"):
            structure = Structure.from_dict(record[form])
            samples.append(Sample(f"{record['id']}:{form}", structure, GENERATED_SOURCE, energy))
    return samples
