"""Priors on generated candidates: how far off is the screen's first model on what it screens?

A prior's held-out figures (``benchmarks/prior.py``) are measured on known crystals, relaxed
and mostly near the hull. A campaign's screen meets generated candidates instead. For each
ternary space (default Li-Co-O and Na-Mn-O, none of whose candidates the shipped prior learned
from) this samples the campaign generators' products, as a campaign makes them with the space's
own ternaries withheld from the known world (``benchmarks/flywheel.py``'s setting), relaxes
them with the CHGNet oracle at the campaigns' settings, and prints for each prior, side by side:

- MAE and bias (meV/atom) of the predicted energy against the relaxed one, by generator;
- the screen's first decision: of the candidates a prior puts within 50 meV/atom of the
  space's known hull (the campaign's binaries and elements, CHGNet labels), how many relaxed
  onto it (at or below it), and of the best 8 formulas (one structure each), how many did.

Usage::

    python benchmarks/prior_candidates.py --priors shipped,/path/to/prior
    python benchmarks/prior_candidates.py --cache relaxed.json.gz   # relax once, reuse

The relaxations take about 10 minutes per space on 2 cores.
"""

from __future__ import annotations

import argparse
import gzip
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Structure
from rich.console import Console
from rich.table import Table

from hullhunter.generators import load_seeds
from hullhunter.models.prior import BUILTIN_PRIOR, load_prior
from hullhunter.workflows.oracles.forcefield import ForceFieldOracle
from hullhunter.workflows.pretrain import LABELS_FILE
from hullhunter.workflows.pretrain_generated import sample_candidates

console = Console()
THRESHOLD = 0.05
TOP = 8


def relaxed_candidates(space: str, per_generator: int, threads: int, cache: dict) -> list[dict]:
    """The space's sampled candidates with their relaxed energies (cached by space)."""
    key = f"{space}|{per_generator}"
    if key not in cache:
        elements = set(space.split("-"))
        world = [s for s in load_seeds() if s.elements != elements]  # own ternaries withheld
        candidates = sample_candidates(space, per_generator, world, seed=1)
        oracle = ForceFieldOracle("chgnet", fmax=0.1, max_steps=200, threads=threads)
        results = oracle.relax(
            [c.structure for c in candidates], [str(i) for i in range(len(candidates))]
        )
        cache[key] = [
            {
                "generator": c.generator,
                "structure": c.structure.as_dict(),
                "relaxed_energy_per_atom": r.energy_per_atom if r.ok else None,
            }
            for c, r in zip(candidates, results, strict=True)
        ]
    return [row for row in cache[key] if row["relaxed_energy_per_atom"] is not None]


def known_hull(space: str) -> PhaseDiagram:
    """The space's elements and binaries of the shipped seeds, at their CHGNet labels."""
    elements = set(space.split("-"))
    with gzip.open(BUILTIN_PRIOR / LABELS_FILE, "rt") as handle:
        labels = {sample_id: energy for sample_id, _, energy in json.load(handle)["labels"]}
    entries = [
        PDEntry(
            seed.structure.composition.element_composition, labels[seed.id] * len(seed.structure)
        )
        for seed in load_seeds()
        if seed.elements < elements and seed.id in labels
    ]
    return PhaseDiagram(entries)


def decomposition(diagram: PhaseDiagram, structure: Structure, energy_per_atom: float) -> float:
    composition = structure.composition.element_composition
    entry = PDEntry(composition, energy_per_atom * composition.num_atoms)
    return float(diagram.get_decomp_and_e_above_hull(entry, allow_negative=True)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaces", default="Li-Co-O,Na-Mn-O")
    parser.add_argument("--priors", default="shipped", help="comma-separated: shipped or folders")
    parser.add_argument("--per-generator", type=int, default=25)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=None, help="gzipped JSON of relaxations")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    cache = {}
    if args.cache and args.cache.is_file():
        with gzip.open(args.cache, "rt") as handle:
            cache = json.load(handle)
    priors = {
        name: load_prior(None if name == "shipped" else Path(name))
        for name in args.priors.split(",")
    }
    accuracy = Table(title="predicted minus relaxed energy, meV/atom (MAE / bias)")
    screen = Table(title=f"candidates within {1000 * THRESHOLD:.0f} meV/atom of the known hull")
    accuracy.add_column("space, generator")
    accuracy.add_column("n", justify="right")
    screen.add_column("space")
    for name in priors:
        accuracy.add_column(name, justify="right")
        screen.add_column(f"{name}: passed, on hull", justify="right")
        screen.add_column(f"{name}: best {TOP} formulas on hull", justify="right")
    for space in args.spaces.split(","):
        rows = relaxed_candidates(space, args.per_generator, args.threads, cache)
        if args.cache:
            with gzip.open(args.cache, "wt") as handle:
                json.dump(cache, handle)
        structures = [Structure.from_dict(row["structure"]) for row in rows]
        relaxed = np.array([row["relaxed_energy_per_atom"] for row in rows])
        generators = np.array([row["generator"] for row in rows])
        diagram = known_hull(space)
        true_e_d = np.array(
            [decomposition(diagram, s, e) for s, e in zip(structures, relaxed, strict=True)]
        )
        predicted = {
            name: prior.structural.predict(structures, tta=False, progress=False).energy_per_atom
            for name, prior in priors.items()
        }
        for group in ("all", *sorted(set(generators))):
            chosen = np.ones(len(rows), bool) if group == "all" else generators == group
            cells = []
            for name in priors:
                error = 1000 * (predicted[name] - relaxed)[chosen]
                cells.append(f"{np.abs(error).mean():.0f} / {error.mean():+.0f}")
            accuracy.add_row(f"{space}, {group}", str(int(chosen.sum())), *cells)
        cells = []
        for name in priors:
            e_d = np.array(
                [
                    decomposition(diagram, s, e)
                    for s, e in zip(structures, predicted[name], strict=True)
                ]
            )
            passed = e_d <= THRESHOLD
            best: dict[str, int] = {}
            for index in np.argsort(e_d):
                if passed[index]:
                    best.setdefault(structures[index].composition.reduced_formula, int(index))
            top = list(best.values())[:TOP]
            cells.append(f"{int(passed.sum())}, {int((true_e_d[passed] <= 0).sum())}")
            cells.append(f"{int((true_e_d[top] <= 0).sum())} of {len(top)}")
        screen.add_row(f"{space} ({int((true_e_d <= 0).sum())} of {len(rows)} on hull)", *cells)
    console.print(accuracy)
    console.print(screen)


if __name__ == "__main__":
    main()
