"""Oracle throughput: CHGNet one process per structure vs batched, and the VASP path's overhead.

CHGNet: ``--n`` candidate structures of 4-40 atoms (AFLOW prototypes shipped with pymatgen,
strained 3 % and rattled 0.05 Å so each relaxation has work to do) are relaxed by the CHGNet
oracle twice: one fresh Python process per structure (imports and model load every time, as a
job per structure would pay) and all of them in one process (model loaded once). Both report
structures per minute; the energies of the two runs must agree.

VASP: ``--vasp`` MP GGA(+U) double relaxations run through atomate2 and custodian with the
test tree's VASP emulator as ``vasp_std``. The emulator logs its own wall time, so the time
spent outside the "binary" (input writing, custodian, parsing, MP2020) is the rest; it is
shown with the oracle's custodian polling (0.1 s) and with custodian's stock polling (10 s).

    python benchmarks/oracle.py              # 6 structures, 2 VASP calculations (~5 min)
    python benchmarks/oracle.py --n 200      # the size the issue names
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from pymatgen.core import Lattice, Structure
from rich.console import Console
from rich.progress import track
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
EMULATOR = ROOT / "tests" / "oracles" / "vasp_emulator" / "vasp_emulator.py"
console = Console()


def candidate_structures(n: int, seed: int) -> list[Structure]:
    """``n`` AFLOW prototypes of 4-40 atoms, strained and rattled (deterministic)."""
    from pymatgen.analysis.prototypes import AFLOW_PROTOTYPE_LIBRARY

    pool = [
        d["snl"].structure
        for d in AFLOW_PROTOTYPE_LIBRARY
        if 4 <= len(d["snl"].structure) <= 40 and d["snl"].structure.is_ordered
    ]
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(pool), size=min(n, len(pool)), replace=False)
    if n > len(pool):
        picks = np.concatenate([picks, rng.choice(len(pool), size=n - len(pool))])
    structures = []
    for k, index in enumerate(picks):
        structure = pool[int(index)].copy()
        structure.apply_strain(0.03)
        structure.perturb(0.05, seed=seed + k)
        structures.append(structure)
    return structures


def worker(path: Path, indices: list[int], threads: int, out: Path) -> None:
    """Relax the chosen structures of a JSON file with the CHGNet oracle; write the results."""
    from hullhunter.workflows.oracles import get_oracle

    structures = [Structure.from_dict(d) for d in json.loads(path.read_text())]
    oracle = get_oracle("chgnet", threads=threads)
    results = oracle.relax([structures[i] for i in indices], [str(i) for i in indices])
    out.write_text(json.dumps([r.as_dict() for r in results]))


def run_worker(path: Path, indices: list[int], threads: int, folder: Path) -> tuple[float, list]:
    out = folder / f"results-{indices[0]}-{len(indices)}.json"
    command = [sys.executable, __file__, "--worker", str(path), "--threads", str(threads)]
    command += ["--indices", ",".join(map(str, indices)), "--out", str(out)]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start, json.loads(out.read_text())


def chgnet_benchmark(n: int, seed: int, threads: int) -> None:
    structures = candidate_structures(n, seed)
    sizes = [len(s) for s in structures]
    console.print(
        f"CHGNet oracle: {n} structures, {min(sizes)}-{max(sizes)} atoms "
        f"(median {statistics.median(sizes):g}), torch threads {threads}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / "structures.json"
        path.write_text(json.dumps([s.as_dict() for s in structures]))
        single_times, single_results = [], []
        for i in track(range(n), description="one process per structure", console=console):
            elapsed, results = run_worker(path, [i], threads, folder)
            single_times.append(elapsed)
            single_results += results
        batched_time, batched_results = run_worker(path, list(range(n)), threads, folder)

    single_total = sum(single_times)
    relax_times = [r["wall_time_s"] for r in batched_results]
    table = Table(title="CHGNet relaxations (wall clock, this machine)")
    for column in ("mode", "total s", "structures/min", "median s/structure"):
        table.add_column(column, justify="right")
    table.add_row(
        "one process per structure",
        f"{single_total:.1f}",
        f"{60 * n / single_total:.1f}",
        f"{statistics.median(single_times):.2f}",
    )
    table.add_row(
        "batched, one process",
        f"{batched_time:.1f}",
        f"{60 * n / batched_time:.1f}",
        f"{statistics.median(relax_times):.2f} (relaxation only)",
    )
    console.print(table)
    per_process = statistics.median(s - r for s, r in zip(single_times, relax_times, strict=True))
    deltas = [
        abs(a["energy_per_atom"] - b["energy_per_atom"])
        for a, b in zip(single_results, batched_results, strict=True)
        if a["energy_per_atom"] is not None and b["energy_per_atom"] is not None
    ]
    steps = [r["n_steps"] for r in batched_results]
    console.print(
        f"batched / one-per-process speed-up: {single_total / batched_time:.2f}x "
        f"(target >= 3x); start-up paid per process: median {per_process:.1f} s; "
        f"FIRE steps median {statistics.median(steps):g}, max {max(steps)}; "
        f"unconverged {sum(not r['converged'] for r in batched_results)}, "
        f"failed {sum(r['error'] is not None for r in batched_results)}; "
        f"max |dE| between the runs {max(deltas, default=0.0) * 1000:.3f} meV/atom"
    )


def vasp_structures(m: int) -> list[Structure]:
    pool = [
        Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.3), ["Mn", "O"], [[0, 0, 0], [0.5] * 3]),
        Structure.from_spacegroup(
            "P6_3mc",
            Lattice.hexagonal(3.25, 5.21),
            ["Zn", "O"],
            [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.38]],
        ),
        Structure.from_spacegroup(
            "Fm-3m", Lattice.cubic(5.5), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3]
        ),
    ]
    return [pool[k % len(pool)] for k in range(m)]


def vasp_overheads(m: int, polling_s: float, folder: Path) -> tuple[list, list, list]:
    """Per calculation: total wall time, wall time outside the emulator, and the CPU time this
    process spent (the work outside the binary, whatever the machine's load)."""
    from hullhunter.workflows.oracles import VaspOracle

    timing = folder / f"emulator-{polling_s}.txt"
    os.environ["HULLHUNTER_VASP_EMULATOR_TIMING"] = str(timing)
    command = f"{sys.executable} {EMULATOR}"
    oracle = VaspOracle(
        vasp_cmd=command,
        vasp_gamma_cmd=command,
        root_dir=folder / f"runs-{polling_s}",
        custodian_kwargs={"polling_time_step": polling_s, "monitor_freq": int(120 / polling_s)},
    )
    totals, outside, cpu = [], [], []
    seen_runs = 0
    cpu_mark = time.process_time()

    def account(result) -> None:
        nonlocal seen_runs, cpu_mark
        runs = [float(x) for x in timing.read_text().split()] if timing.exists() else []
        inside = sum(runs[seen_runs:])
        seen_runs = len(runs)
        if result.error:
            raise RuntimeError(f"VASP path failed: {result.error}")
        totals.append(result.wall_time_s)
        outside.append(result.wall_time_s - inside)
        cpu.append(time.process_time() - cpu_mark)
        cpu_mark = time.process_time()

    oracle.relax(vasp_structures(m), [f"calc-{k}" for k in range(m)], on_result=account)
    return totals, outside, cpu


def vasp_benchmark(m: int) -> None:
    from pymatgen.core import SETTINGS

    spec = importlib.util.spec_from_file_location("potcars", EMULATOR.with_name("potcars.py"))
    potcars = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(potcars)
    os.environ.pop("HULLHUNTER_VASP_EMULATOR_FAULTS", None)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        SETTINGS["PMG_VASP_PSP_DIR"] = str(potcars.write_standin_potcars(folder / "potcars"))
        table = Table(title=f"VASP path, {m} MP GGA double relaxations (2 VASP runs each)")
        columns = ("custodian polling", "total s", "outside binary s", "outside binary CPU s")
        for column in columns:
            table.add_column(column, justify="right")
        for polling_s, label in ((0.1, "0.1 s (oracle default)"), (10.0, "10 s (stock)")):
            totals, outside, cpu = vasp_overheads(m, polling_s, folder)
            medians = (statistics.median(values) for values in (totals, outside, cpu))
            table.add_row(label, *(f"{value:.2f}" for value in medians))
        console.print(table)
        console.print(
            "medians per calculation; target: under 2 s outside the binary per calculation "
            "(wall clock includes waiting for a CPU on a loaded machine; CPU s does not)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=6, help="CHGNet structures (issue: 200)")
    parser.add_argument("--vasp", type=int, default=2, help="emulated VASP calculations")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-chgnet", action="store_true")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--indices", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("jobflow").setLevel(logging.ERROR)
    if args.worker:
        indices = [int(i) for i in args.indices.split(",")]
        worker(args.worker, indices, args.threads, args.out)
        return
    if not args.skip_chgnet:
        chgnet_benchmark(args.n, args.seed, args.threads)
    if args.vasp:
        vasp_benchmark(args.vasp)


if __name__ == "__main__":
    main()
