"""MD throughput of pretrained vs fine-tuned CHGNet: atom-steps/s and ns/day for ~100 atoms.

Runs NVT MD (workflows.md.run_md, the code path the conductivity jobs use) on a 3x3x3
alpha-Li3N supercell (108 atoms) at 1,000 K with 2 fs steps, for the pretrained CHGNet and
a fine-tuned one (weights from --model, or a one-epoch fine-tune on a few CHGNet-labelled
Li3N relaxation frames made here, so the file has a real fine-tuned model). Prints the
median of --repeats timed runs side by side. CPU only unless a CUDA device is visible.

    python benchmarks/md.py [--steps 20] [--repeats 3] [--threads 2] [--model path.pt]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from pymatgen.core import Lattice, Structure

from hullhunter.workflows.finetune import (
    chgnet_calculator,
    finetune_chgnet,
    gnome_sample,
    record_relaxations,
)
from hullhunter.workflows.md import MDSettings, run_md

SECONDS_PER_DAY = 86400.0


def li3n() -> Structure:
    """alpha-Li3N (P6/mmm, a = 3.648 Å, c = 3.875 Å)."""
    return Structure.from_spacegroup(
        "P6/mmm",
        Lattice.hexagonal(3.648, 3.875),
        ["N", "Li", "Li"],
        [[0, 0, 0], [0, 0, 0.5], [1 / 3, 2 / 3, 0]],
    )


def quick_finetuned_model(directory: Path) -> Path:
    """A fine-tuned CHGNet (one epoch on rattled-Li3N relaxation frames) saved to a file."""
    rattled = []
    for seed in range(3):
        cell = li3n() * (2, 2, 1)
        cell.perturb(0.1, seed=seed)
        rattled.append(cell)
    trajectories = record_relaxations(rattled, max_steps=5)
    path = directory / "chgnet_finetuned.pt"
    finetune_chgnet(gnome_sample(trajectories, 8), epochs=1, batch_size=4, save_path=path)
    return path


def time_md(
    models: dict[str, str | Path | None], device: str, steps: int, repeats: int
) -> dict[str, list[float]]:
    """Wall seconds of ``steps`` MD steps per model, repeats interleaved, after a warm-up.

    Interleaving the models in each repeat keeps a shared CPU's load changes from favouring
    whichever model happens to run later.
    """
    structure = li3n() * (3, 3, 3)
    calculators = {name: chgnet_calculator(model, device=device) for name, model in models.items()}
    warmup = MDSettings(duration_ps=0.006, equilibration_ps=0.0, sample_every=3)
    for calculator in calculators.values():
        run_md(structure, calculator, warmup)
    settings = MDSettings(duration_ps=steps * 2.0 / 1000, equilibration_ps=0.0, sample_every=steps)
    timings: dict[str, list[float]] = {name: [] for name in calculators}
    for _ in range(repeats):
        for name, calculator in calculators.items():
            start = time.perf_counter()
            *_, failure = run_md(structure, calculator, settings)
            if failure:
                raise RuntimeError(f"benchmark MD failed: {failure}")
            timings[name].append(time.perf_counter() - start)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", type=Path, default=None, help="fine-tuned CHGNet weights")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    n_atoms = len(li3n()) * 27
    with tempfile.TemporaryDirectory() as scratch:
        finetuned = args.model or quick_finetuned_model(Path(scratch))
        rows = time_md(
            {"pretrained": None, "fine-tuned": finetuned}, device, args.steps, args.repeats
        )
    print(
        f"MD throughput, {n_atoms}-atom Li3N, NVT 1000 K, 2 fs, device={device}, "
        f"torch threads={args.threads}, {args.steps} steps x {args.repeats} repeats (median)"
    )
    print(f"{'model':<12}{'s/step':>10}{'atom-steps/s':>15}{'ns/day':>10}")
    medians = {}
    for name, timings in rows.items():
        per_step = statistics.median(timings) / args.steps
        medians[name] = per_step
        ns_per_day = SECONDS_PER_DAY / per_step * 2.0e-6
        print(f"{name:<12}{per_step:>10.4f}{n_atoms / per_step:>15.0f}{ns_per_day:>10.4f}")
    ratio = medians["fine-tuned"] / medians["pretrained"]
    print(f"fine-tuned / pretrained time per step: {ratio:.2f}")


if __name__ == "__main__":
    main()
