"""The screening prior on its held-out split: formation-energy MAE, stability F1, speed.

On the composition-hash held-out split of the prior's own labelled structures (every
polymorph of about 15% of the formulas; the prior never saw them), prints:

- the prior's formation-energy MAE against its CHGNet single-point labels (structural, at
  the given volume and with volume TTA; compositional, on each formula's lowest label);
- stability classification against the oracle's hull: the held-out crystals relaxed by the
  CHGNet oracle (FIRE, FrechetCellFilter) on the hull of all other labels; each method's
  decomposition energy is the true one shifted by its energy error (Matbench Discovery's
  convention), stable means <= 0. CHGNet's own single point (the label) is the oracle's
  cheap classifier to compare with;
- speed: structures per second of CHGNet single points and of the prior (graphs
  included), median of repeats, and their ratio;
- where the error lies: the prior's MAE and bias by source (MP compounds, MP elemental
  polymorphs, AFLOW prototypes, pymatgen's structures), by number of elements and by label
  formation energy. A campaign screens compounds, mostly near the hull; high-energy
  elemental polymorphs (N2 and H2 cells at +2 to +5 eV/atom) weigh heavily in the overall
  figure.

Usage::

    python benchmarks/prior.py                 # all held-out structures, ~20 min on 2 cores
    python benchmarks/prior.py --n 300         # a random sample of them
    python benchmarks/prior.py --prior DIR     # a prior made by `hullhunter models pretrain`
    python benchmarks/prior.py --relaxed r.json --relax-only   # relax once, then reuse
    python benchmarks/prior.py --accuracy-only     # the error table alone, in seconds
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from pymatgen.entries.computed_entries import ComputedEntry
from rich.console import Console
from rich.table import Table

from hullhunter.hull import HullSet, classification_metrics
from hullhunter.models import composition_hash_split
from hullhunter.models.prior import load_prior
from hullhunter.workflows import pretrain
from hullhunter.workflows.oracles.forcefield import ForceFieldOracle

console = Console()


def _median_seconds(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", type=Path, default=None, help="prior folder (default: shipped)")
    parser.add_argument("--n", type=int, default=None, help="held-out structures (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats (median)")
    parser.add_argument("--fmax", type=float, default=0.05, help="oracle relaxation, eV/Å")
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument(
        "--relaxed", type=Path, default=None, help="JSON cache of the oracle's relaxed energies"
    )
    parser.add_argument("--relax-only", action="store_true", help="fill the cache and stop")
    parser.add_argument(
        "--accuracy-only", action="store_true", help="print where the error lies and stop"
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="No Pauling electronegativity")
    torch.set_num_threads(args.threads)

    prior = load_prior(args.prior)
    max_atoms = prior.card.get("max_atoms", 80)
    samples, _ = pretrain.gather_samples(max_atoms=max_atoms)
    labelled = pretrain.load_labels(prior.path / pretrain.LABELS_FILE, samples)
    usable, references = pretrain.with_references(labelled)
    everything = usable.samples
    is_train = composition_hash_split([s.structure.composition for s in everything])
    held_out = np.flatnonzero(~is_train)
    if args.n is not None and args.n < len(held_out):
        held_out = np.sort(np.random.default_rng(0).choice(held_out, args.n, replace=False))
    test = [everything[i] for i in held_out]
    structures = [s.structure for s in test]
    label = np.array([s.energy_per_atom for s in test])
    console.print(
        f"prior {prior.path}: {len(everything)} labelled structures, {len(test)} held out "
        f"({len({s.structure.composition.reduced_formula for s in test})} formulas)"
    )

    plain = prior.structural.predict(structures, tta=False, progress=False).energy_per_atom
    console.print(error_table(test, plain - label, label, references))
    if args.accuracy_only:
        return

    # the oracle's hull: held-out crystals relaxed, on the hull of every other label
    oracle = ForceFieldOracle(
        "chgnet",
        fmax=args.fmax,
        max_steps=args.max_steps,
        threads=args.threads,
        record_frames=False,
        progress=True,
    )
    cache = json.loads(args.relaxed.read_text()) if args.relaxed and args.relaxed.is_file() else {}
    todo = [i for i, s in enumerate(test) if s.id not in cache]
    started = time.perf_counter()
    results = oracle.relax([structures[i] for i in todo], [test[i].id for i in todo])
    relax_s = time.perf_counter() - started
    cache.update({r.candidate_id: r.energy_per_atom if r.ok else None for r in results})
    if args.relaxed:
        args.relaxed.write_text(json.dumps(cache))
    relaxed = np.array([np.nan if cache[s.id] is None else cache[s.id] for s in test])
    ok = np.isfinite(relaxed)
    if args.relax_only:
        console.print(f"relaxed {len(todo)} structures in {relax_s:.0f} s into {args.relaxed}")
        return

    # accuracy against the labels
    tta = prior.structural.predict(structures, tta=True, progress=False).energy_per_atom
    lowest = pretrain.lowest_per_formula(test)
    composition_mae = float("nan")
    if prior.compositional is not None:
        predicted = prior.compositional.predict(list(lowest), progress=False).energy_per_atom
        composition_mae = float(np.abs(predicted - np.array(list(lowest.values()))).mean())

    energies = np.array([s.energy_per_atom for s in everything])
    energies[held_out[ok]] = relaxed[ok]
    entries = [
        ComputedEntry(s.structure.composition, e * len(s.structure), entry_id=str(i))
        for i, (s, e) in enumerate(zip(everything, energies, strict=True))
    ]
    truth = HullSet(entries, max_abs_formation_energy=np.inf).entry_decomposition_energies()
    true_hull = np.array([truth[str(i)] for i in held_out])
    true_hull[~ok] = np.nan
    methods = {
        "CHGNet single point": label,
        "prior": plain,
        "prior + volume TTA": tta,
    }
    stability = {
        name: classification_metrics(true_hull + energy - relaxed, true_hull)
        for name, energy in methods.items()
    }

    # speed, graphs included (median of repeats)
    single_points = _median_seconds(
        lambda: pretrain.label_with_chgnet(test, threads=args.threads, progress=False),
        args.repeats,
    )
    timings = {
        "CHGNet single point": single_points,
        "prior": _median_seconds(
            lambda: prior.structural.predict(structures, tta=False, progress=False), args.repeats
        ),
        "prior + volume TTA": _median_seconds(
            lambda: prior.structural.predict(structures, tta=True, progress=False), args.repeats
        ),
    }

    table = Table(title=f"held-out split: {len(test)} structures, {int(ok.sum())} relaxed")
    for column in ("method", "MAE vs labels", "F1", "precision", "recall", "struct/s", "speed"):
        table.add_column(column, justify="right")
    maes = {name: _mae(energy, label) for name, energy in methods.items()}
    figures = {}
    for name in methods:
        metrics = stability[name]
        rate = len(test) / timings[name]
        figures[name] = {
            "mae_vs_labels_ev": maes[name],
            **{k: metrics[k] for k in ("f1", "precision", "recall", "tp", "fp", "fn", "tn")},
            "seconds": timings[name],
            "structures_per_s": rate,
            "speedup_vs_chgnet": single_points / timings[name],
        }
        table.add_row(
            name,
            f"{1000 * maes[name]:.0f} meV/atom",
            f"{metrics['f1']:.3f}",
            f"{metrics['precision']:.3f}",
            f"{metrics['recall']:.3f}",
            f"{rate:.0f}",
            f"{single_points / timings[name]:.1f}x",
        )
    console.print(table)
    prevalence = stability["prior"]["prevalence"]
    console.print(
        f"compositional prior MAE on {len(lowest)} held-out formulas: "
        f"{1000 * composition_mae:.0f} meV/atom; stable share {prevalence:.2f}; oracle "
        f"relaxations {relax_s:.0f} s ({int((~ok).sum())} failed); card MAE "
        f"{1000 * prior.card['metrics']['structural'].get('test_mae', np.nan):.0f} meV/atom"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"n_test": len(test), "compositional_mae_ev": composition_mae, "methods": figures},
                indent=2,
                default=float,
            )
        )


SOURCES = {
    "matbench_dielectric": "MP compounds",
    "mp-elemental": "MP elemental polymorphs",
    "aflow": "AFLOW prototypes",
    "pymatgen": "pymatgen's structures",
}


def error_table(
    test: list, error: np.ndarray, label: np.ndarray, references: dict[str, float]
) -> Table:
    """The prior's MAE and bias (meV/atom) on groups of the held-out structures."""
    formation = label - np.array(
        [
            sum(
                references[el.symbol] * x
                for el, x in s.structure.composition.fractional_composition.items()
            )
            for s in test
        ]
    )
    source = np.array([SOURCES.get(s.id.split(":")[0], "other") for s in test])
    n_elements = np.array([len(s.structure.composition) for s in test])
    groups = {"all": np.ones(len(test), dtype=bool)}
    groups |= {name: source == name for name in SOURCES.values()}
    groups |= {
        "1 element": n_elements == 1,
        "2 elements": n_elements == 2,
        "3 elements": n_elements == 3,
        "4 or more elements": n_elements >= 4,
        "compounds, label formation energy <= +0.5 eV/atom": (n_elements > 1) & (formation <= 0.5),
        "label formation energy > +0.5 eV/atom": formation > 0.5,
    }
    table = Table(title="where the prior's error lies (held-out split, prior at the given volume)")
    for column in ("structures", "n", "MAE meV/atom", "median", "bias"):
        table.add_column(column, justify="right")
    for name, chosen in groups.items():
        if chosen.any():
            part = error[chosen]
            table.add_row(
                name,
                str(int(chosen.sum())),
                f"{1000 * np.abs(part).mean():.0f}",
                f"{1000 * np.median(np.abs(part)):.0f}",
                f"{1000 * part.mean():+.0f}",
            )
    return table


def _mae(predicted: np.ndarray, label: np.ndarray) -> float:
    return float(np.abs(predicted - label).mean())


if __name__ == "__main__":
    main()
