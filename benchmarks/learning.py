"""Learning curve of the structural GNoME model on CHGNet-labelled structures.

The benchmark makes its own data: pymatgen's bundled crystals and AFLOW prototypes
decorated / substituted with common elements (see ``screening.make_structures``),
labelled with CHGNet 0.3.0 energies per atom (single point by default; ``--relax-steps``
relaxes each structure first with FIRE + FrechetCellFilter). Elemental reference energies
are a least-squares fit on the training split. It prints test MAE (composition-hash test
split) in meV/atom against training-set size with the fitted power law, next to two
baselines on the same split: the training mean and a linear model in composition.

    python benchmarks/learning.py              # ~10 minutes on 2 cores
    python benchmarks/learning.py --n 1500 --models 3
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np
from pymatgen.core import Structure

from hullhunter.models import GNoMEConfig, composition_hash_split, scaling_curve

sys.path.insert(0, str(Path(__file__).parent))
from screening import make_structures  # sibling benchmark script


def label_with_chgnet(
    structures: list[Structure], relax_steps: int
) -> tuple[list[Structure], np.ndarray]:
    """CHGNet energies per atom, after an optional short relaxation."""
    from chgnet.model import CHGNet, StructOptimizer

    model = CHGNet.load(verbose=False)
    if relax_steps > 0:
        optimizer = StructOptimizer(model=model)
        structures = [
            optimizer.relax(s, fmax=0.1, steps=relax_steps, verbose=False)["final_structure"]
            for s in structures
        ]
    predictions = model.predict_structure(structures, task="e", batch_size=32)
    return structures, np.array([float(p["e"]) for p in predictions])


def load_or_make_dataset(
    n: int, relax_steps: int, cache: Path
) -> tuple[list[Structure], np.ndarray]:
    """The labelled dataset, cached on disk (labelling is the slow part)."""
    key = f"n={n},relax={relax_steps},contact-scaled"
    if cache.exists():
        stored = json.loads(gzip.decompress(cache.read_bytes()))
        if stored["key"] == key:
            return [Structure.from_dict(d) for d in stored["structures"]], np.array(
                stored["energies"]
            )
    structures, energies = label_with_chgnet(make_structures(n, seed=1), relax_steps)
    payload = {
        "key": key,
        "structures": [s.as_dict() for s in structures],
        "energies": energies.tolist(),
    }
    cache.write_bytes(gzip.compress(json.dumps(payload).encode()))
    return structures, energies


def fit_elemental_energies(
    structures: list[Structure], energies: np.ndarray, mask: np.ndarray
) -> tuple[dict[str, float], np.ndarray]:
    """Least-squares elemental energies (E/atom = sum_x x_el * mu_el) on ``mask``; returns
    them and the linear model's predictions for every structure."""
    elements = sorted({el.symbol for s in structures for el in s.composition})
    fractions = np.array(
        [[s.composition.get_atomic_fraction(el) for el in elements] for s in structures]
    )
    mu, *_ = np.linalg.lstsq(fractions[mask], energies[mask], rcond=None)
    return dict(zip(elements, mu.tolist(), strict=True)), fractions @ mu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=600, help="labelled structures")
    parser.add_argument("--relax-steps", type=int, default=0, help="CHGNet relaxation steps")
    parser.add_argument("--models", type=int, default=1, help="ensemble members per size")
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for training")
    parser.add_argument(
        "--cache", type=Path, default=Path("/tmp/hullhunter_learning_labels.json.gz")
    )
    args = parser.parse_args()

    started = time.perf_counter()
    structures, energies = load_or_make_dataset(args.n, args.relax_steps, args.cache)
    how = "single point" if args.relax_steps == 0 else f"<= {args.relax_steps} relaxation steps"
    print(
        f"{len(structures)} structures labelled with CHGNet ({how}) "
        f"in {time.perf_counter() - started:.0f} s (cached in {args.cache})"
    )
    is_train = composition_hash_split([s.composition for s in structures])
    elemental, linear = fit_elemental_energies(structures, energies, is_train)
    test = ~is_train
    mean_mae = np.abs(energies[is_train].mean() - energies[test]).mean()
    linear_mae = np.abs(linear[test] - energies[test]).mean()
    config = GNoMEConfig.small(epochs=args.epochs, torch_threads=args.threads)
    began = time.perf_counter()
    curve = scaling_curve(
        structures,
        energies,
        elemental,
        config,
        fractions=(0.125, 0.25, 0.5, 1.0),
        n_models=args.models,
    )
    test_formulas = {
        s.composition.reduced_formula for s, t in zip(structures, test, strict=True) if t
    }
    print(
        f"small preset (64-d, 3 steps), {args.models} model(s) per size, "
        f"{time.perf_counter() - began:.0f} s; test set {int(test.sum())} structures "
        f"({len(test_formulas)} compositions, none in training)"
    )
    print("\ntest MAE, meV/atom (baselines use the full training split)")
    print(f"{'train size':>10}  {'GNoME':>8}  {'mean':>8}  {'linear in composition':>22}")
    for size, mae in zip(curve["train_sizes"], curve["test_mae"], strict=True):
        print(
            f"{size:>10}  {1000 * mae:>8.1f}  {1000 * mean_mae:>8.1f}  {1000 * linear_mae:>22.1f}"
        )
    print(
        f"\npower law: MAE = {1000 * curve['prefactor']:.0f} meV * N^-{curve['exponent']:.3f}; "
        f"falls with size: {all(np.diff(curve['test_mae']) < 0)}"
    )


if __name__ == "__main__":
    main()
