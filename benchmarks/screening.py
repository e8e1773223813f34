"""Screening speed of the GNoME ensembles against CHGNet, on real structures of 4-40 atoms.

Prints, in one run on the same structures: graphs/s (featurisation), structures/s for one
model at one volume and for the full GNoME screen (4 models x 20 volumes), for the
GNoME-size network and the small CPU preset, next to CHGNet 0.3.0 batched single-point
energies and CHGNet relaxations (FIRE, fmax 0.05, FrechetCellFilter) on a sample, and
the peak memory of a full screen per 1,000 structures.

Structures: pymatgen's bundled crystals and AFLOW prototypes, decorated / substituted
with common elements and rescaled so the closest atoms touch (sum of atomic radii),
as a substitution generator would produce them. Usage::

    python benchmarks/screening.py            # ~5 minutes on 2 cores
    python benchmarks/screening.py --n 2000   # the issue's size
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil
import torch
from pymatgen.analysis.prototypes import AFLOW_PROTOTYPE_LIBRARY
from pymatgen.core import Element, Structure
from pymatgen.util.testing import PymatgenTest

from hullhunter.models import Ensemble, GNoMEConfig, structures_to_graphs
from hullhunter.models.ensemble import build_network
from hullhunter.models.graphs import collate

CATIONS = [
    "Li", "Na", "K", "Mg", "Ca", "Sr", "Ba", "Al", "Ga", "Zn", "Ti", "V", "Cr", "Mn",
    "Fe", "Co", "Ni", "Cu", "Y", "Zr", "Nb", "Mo", "Sn", "La",
]  # fmt: skip
ANIONS = ["O", "S", "Se", "F", "Cl", "Br", "N", "P"]
BUNDLED = [
    "BaNiO3", "CsCl", "K2O2", "La2CoO4F", "Li10GeP2S12", "Li2O", "Li2O2", "Li3V2(PO4)3",
    "LiFePO4", "NaFePO4", "Pb2TiZrO6", "Si", "SiO2", "Sn", "SrTiO3", "TiO2", "TlBiSe2", "VO2",
]  # fmt: skip


def _seed_structures() -> list[Structure]:
    protos = [p["snl"].structure for p in AFLOW_PROTOTYPE_LIBRARY]
    bundled = [PymatgenTest.get_structure(name) for name in BUNDLED]
    return [s for s in protos + bundled if s.is_ordered and len(s) <= 40]


def _decorate(parent: Structure, rng: np.random.Generator) -> Structure:
    """Replace every species by a random cation/anion (most electronegative -> anion),
    rescale so the closest atoms touch, and enlarge to at least 4 atoms."""
    species = sorted(parent.composition.elements, key=lambda el: el.X)
    n_anions = 1 if len(species) > 1 else 0
    cations = rng.choice(CATIONS, size=len(species) - n_anions, replace=False).tolist()
    anions = rng.choice(ANIONS, size=n_anions, replace=False).tolist()
    mapping = dict(zip(species, cations + anions, strict=True))
    structure = parent.copy()
    structure.replace_species(mapping)
    while len(structure) < 4:
        shortest = int(np.argmin(structure.lattice.abc))
        scaling = [1, 1, 1]
        scaling[shortest] = 2
        structure.make_supercell(scaling)
    # scale so that the closest pair of atoms touches (distance = sum of atomic radii)
    radii = np.array([Element(str(sp)).atomic_radius for sp in structure.species])
    distances = structure.distance_matrix + np.diag(np.full(len(structure), np.inf))
    contact = float((distances / (radii[:, None] + radii[None, :])).min())
    structure.scale_lattice(structure.volume / contact**3)
    return structure


def _every_atom_bonded(structure: Structure, within: float = 4.0) -> bool:
    """False for molecular-like cells whose contact scaling leaves atoms isolated."""
    centres = structure.get_neighbor_list(within)[0]
    return len(set(centres.tolist())) == len(structure)


def make_structures(n: int, seed: int = 0) -> list[Structure]:
    """``n`` decorated real prototypes/crystals with 4-40 atoms, reproducible for a seed."""
    rng = np.random.default_rng(seed)
    parents = _seed_structures()
    out: list[Structure] = []
    while len(out) < n:
        candidate = _decorate(parents[int(rng.integers(len(parents)))], rng)
        if 4 <= len(candidate) <= 40 and _every_atom_bonded(candidate):
            out.append(candidate)
    return out


def _timed(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` calls, in seconds."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _random_ensemble(config: GNoMEConfig, n_models: int, elements: set[str]) -> Ensemble:
    """Untrained ensemble: speed does not depend on the weights."""
    torch.manual_seed(0)
    network = build_network(config, n_models, False, 17.0)
    return Ensemble(network, config, dict.fromkeys(elements, 0.0))


@torch.no_grad()
def _stacked_screen(ensemble: Ensemble, structures: list[Structure]) -> torch.Tensor:
    """The full screen through the stacked training network (what prediction used before
    it looped over members), in the same chunks as ``Ensemble.predict``."""
    scales = ensemble.config.volume_scales()
    size = max(1, ensemble.config.predict_batch_graphs // len(scales))
    outputs = []
    for start in range(0, len(structures), size):
        graphs = structures_to_graphs(
            structures[start : start + size], ensemble.config.cutoff / min(scales)
        )
        batch = collate(graphs, scales, ensemble.config.cutoff)
        outputs.append(ensemble.network(batch).view(ensemble.n_models, len(scales), -1).amin(1))
    return torch.cat(outputs, dim=1)


def _memory_probe(path: str, preset: str) -> None:
    """Child process: load structures, screen them while sampling RSS every 5 ms; print
    the peak RSS above the level before screening, in MiB."""
    structures = [Structure.from_dict(d) for d in json.loads(Path(path).read_text())]
    config = GNoMEConfig() if preset == "gnome" else GNoMEConfig.small()
    elements = {el.symbol for s in structures for el in s.composition}
    ensemble = _random_ensemble(config, 4, elements)
    process = psutil.Process()
    before = process.memory_info().rss
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    ensemble.predict(structures, tta=True)
    done.set()
    sampler.join()
    print((peak - before) / 2**20)


def _peak_memory_increase(structures: list[Structure], preset: str) -> float:
    """Peak RSS increase while screening ``structures`` in a fresh process, MiB."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump([s.as_dict() for s in structures], handle)
    command = [sys.executable, __file__, "--memory-probe", handle.name, "--preset", preset]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    Path(handle.name).unlink()
    return float(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="structures (issue: 2000)")
    parser.add_argument("--gnome-n", type=int, default=24, help="structures for GNoME-size screen")
    parser.add_argument("--chgnet-sample", type=int, default=3, help="CHGNet relaxations")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--memory-probe", help=argparse.SUPPRESS)
    parser.add_argument("--preset", default="small", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        _memory_probe(args.memory_probe, args.preset)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")
    started = time.perf_counter()
    structures = make_structures(args.n)
    sizes = [len(s) for s in structures]
    print(
        f"{len(structures)} structures, {min(sizes)}-{max(sizes)} atoms "
        f"(median {statistics.median(sizes):.0f}), built in {time.perf_counter() - started:.1f} s"
    )
    elements = {el.symbol for s in structures for el in s.composition}

    rows: list[tuple[str, str, float]] = []
    t_graph = _timed(lambda: structures_to_graphs(structures, 4.0), 3)
    rows.append(("featurisation (vesin, 4 Å), serial", "graphs/s", len(structures) / t_graph))

    presets = {
        "small (64-d, 3 steps)": (GNoMEConfig.small(), structures),
        "GNoME-size (256-d, 3 steps)": (GNoMEConfig(), structures[: args.gnome_n]),
    }
    for name, (config, subset) in presets.items():
        single = _random_ensemble(config, 1, elements)
        single.predict(subset[:8], tta=False)
        t_single = _timed(lambda m=single, s=subset: m.predict(s, tta=False), 3)
        rows.append((f"{name}: 1 model x 1 volume", "structures/s", len(subset) / t_single))
        full = _random_ensemble(config, 4, elements)
        t_full = _timed(lambda m=full, s=subset: m.predict(s, tta=True), 1)
        rows.append((f"{name}: 4 models x 20 volumes", "structures/s", len(subset) / t_full))
        t_stacked = _timed(lambda m=full, s=subset: _stacked_screen(m, s), 1)
        rows.append(
            (f"{name}: 4 x 20, stacked network (ablation)", "structures/s", len(subset) / t_stacked)
        )

    from chgnet.model import CHGNet, StructOptimizer

    chgnet = CHGNet.load(verbose=False)
    chgnet.predict_structure(structures[:4], task="e", batch_size=16)
    t_chg = _timed(lambda: chgnet.predict_structure(structures, task="e", batch_size=16), 1)
    rows.append(
        ("CHGNet 0.3.0 batched single point (energy)", "structures/s", len(structures) / t_chg)
    )
    optimizer = StructOptimizer(model=chgnet)
    relax_times, relax_steps = [], []
    for structure in structures[: args.chgnet_sample]:
        began = time.perf_counter()
        result = optimizer.relax(
            structure,
            fmax=0.05,
            steps=500,
            relax_cell=True,
            ase_filter="FrechetCellFilter",
            verbose=False,
        )
        relax_times.append(time.perf_counter() - began)
        relax_steps.append(len(result["trajectory"].energies))
    rows.append(
        (
            "CHGNet relaxation fmax 0.05 + cell filter",
            "structures/s",
            1 / statistics.median(relax_times),
        )
    )

    width = max(len(r[0]) for r in rows)
    print(f"\n{'measurement':<{width}}  {'rate':>10}  unit          s/structure")
    for name, unit, rate in rows:
        print(f"{name:<{width}}  {rate:>10.2f}  {unit:<12}  {1 / rate:.4f}")
    rate = {name: value for name, _, value in rows}
    chg_single = rate["CHGNet 0.3.0 batched single point (energy)"]
    chg_relax = rate["CHGNet relaxation fmax 0.05 + cell filter"]
    print(
        f"\nCHGNet relaxations: median {statistics.median(relax_times):.1f} s, "
        f"median {statistics.median(relax_steps):.0f} steps (max 500), "
        f"on {len(relax_times)} structures"
    )
    for name in presets:
        single = rate[f"{name}: 1 model x 1 volume"]
        full = rate[f"{name}: 4 models x 20 volumes"]
        stacked = rate[f"{name}: 4 x 20, stacked network (ablation)"]
        print(
            f"{name}: 1x1 / CHGNet single point = {single / chg_single:.2f}x (target >= 1); "
            f"full screen cost / CHGNet relaxation = {chg_relax / full:.4f} (target <= 0.1); "
            f"default (members looped) / stacked network = {full / stacked:.2f}x"
        )
    for preset, label, subset in (
        ("small", "small", structures[:1000]),
        ("gnome", "GNoME-size", structures[: args.gnome_n]),
    ):
        mib = _peak_memory_increase(subset, preset)
        print(
            f"peak RSS increase of a full screen ({label}) of {len(subset)} structures: "
            f"{mib:.0f} MiB (prediction streams in chunks of 160 graphs, so this does "
            "not grow with the number of structures)"
        )


if __name__ == "__main__":
    main()
