"""Decomposition energies of many candidates: HullSet vs a loop of pymatgen calls.

Synthetic campaign: ``--systems`` chemical systems (2-4 elements from 40), a reference of
about ``--reference`` entries spread over them (elements with polymorphs, compounds in
each system and its subsystems), and ``--candidates`` candidate compositions in those
systems. HullSet scores every candidate (hull builds included); pymatgen scores a random
``--sample`` of the same candidates with ``PhaseDiagram.get_e_above_hull`` one call each,
after building one PhaseDiagram per system (build time reported separately). Both get the
same candidates; the script checks that they agree and prints per-candidate costs.

    python benchmarks/hull.py                     # 100,000 candidates, 200 systems
    python benchmarks/hull.py --candidates 20000 --sample 500
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition
from pymatgen.entries.computed_entries import ComputedEntry

from hullhunter.hull import HullSet

AGREEMENT_TOL = 1e-6  # eV/atom, the bound

ELEMENTS = [
    "Li",
    "Na",
    "K",
    "Mg",
    "Ca",
    "Sr",
    "Ba",
    "Sc",
    "Y",
    "Ti",
    "Zr",
    "Nb",
    "Ta",
    "Cr",
    "Mo",
    "W",
    "Mn",
    "Fe",
    "Co",
    "Ni",
    "Cu",
    "Zn",
    "Al",
    "Ga",
    "In",
    "Si",
    "Ge",
    "Sn",
    "Pb",
    "P",
    "As",
    "Sb",
    "Bi",
    "O",
    "S",
    "Se",
    "Te",
    "F",
    "Cl",
    "N",
]


def make_campaign(
    n_systems: int, n_reference: int, n_candidates: int, seed: int
) -> tuple[list[ComputedEntry], list[Composition], np.ndarray]:
    """Reference entries, candidate compositions and candidate energies per atom."""
    rng = np.random.default_rng(seed)
    refs = dict(zip(ELEMENTS, rng.uniform(-9.0, -1.5, len(ELEMENTS)), strict=True))
    systems: set[tuple[str, ...]] = set()
    while len(systems) < n_systems:
        size = int(rng.integers(2, 5))
        systems.add(tuple(sorted(rng.choice(ELEMENTS, size, replace=False).tolist())))
    system_list = sorted(systems)

    def random_point(system: tuple[str, ...], allow_subsystem: bool) -> tuple[Composition, float]:
        while True:
            amounts = rng.integers(0 if allow_subsystem else 1, 7, len(system))
            if amounts.sum() > 0 and (amounts > 0).sum() > 1:
                break
        comp = Composition(dict(zip(system, amounts.tolist(), strict=True)))
        frac = comp.fractional_composition
        on_elements = sum(frac[el] * refs[el] for el in system)
        return comp, on_elements + rng.uniform(-1.2, 0.3)

    entries = []
    for el, energy in refs.items():
        for k in range(3):  # ground state and two higher polymorphs
            entries.append(ComputedEntry(el, energy + 0.05 * k, entry_id=f"ref-{el}-{k}"))
    while len(entries) < n_reference:
        system = system_list[len(entries) % len(system_list)]
        comp, energy = random_point(system, allow_subsystem=True)
        entries.append(ComputedEntry(comp, energy * comp.num_atoms, entry_id=f"ref-{len(entries)}"))

    candidates, energies = [], np.empty(n_candidates)
    for i in range(n_candidates):
        comp, energies[i] = random_point(system_list[i % len(system_list)], allow_subsystem=False)
        candidates.append(comp)
    return entries, candidates, energies


class Clock:
    """Wall and CPU seconds of a block; CPU time is steadier on a shared, loaded machine."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def run_hullset(
    entries: list[ComputedEntry], candidates: list[Composition], energies: np.ndarray
) -> tuple[Clock, Clock, np.ndarray]:
    """(clock of loading the reference, clock of scoring every candidate, the scores)."""
    with Clock() as load:
        hull_set = HullSet(entries)
    with Clock() as score:
        scores = hull_set.decomposition_energy(candidates, energies)
    return load, score, scores


def build_diagrams(
    entries: list[ComputedEntry], candidates: list[Composition], sample: np.ndarray
) -> tuple[dict[frozenset, PhaseDiagram], Clock]:
    """One pymatgen PhaseDiagram per chemical system of the sampled candidates."""
    diagrams: dict[frozenset, PhaseDiagram] = {}
    element_sets = [frozenset(e.composition.chemical_system.split("-")) for e in entries]
    with Clock() as clock:
        for i in sample:
            system = frozenset(candidates[i].chemical_system.split("-"))
            if system not in diagrams:
                members = [e for e, s in zip(entries, element_sets, strict=True) if s <= system]
                diagrams[system] = PhaseDiagram(members)
    return diagrams, clock


def run_pymatgen(
    diagrams: dict[frozenset, PhaseDiagram],
    candidates: list[Composition],
    energies: np.ndarray,
    sample: np.ndarray,
) -> tuple[Clock, np.ndarray]:
    """(clock of the loop, scores): one get_e_above_hull call per sampled candidate."""
    jobs = [
        (diagrams[frozenset(candidates[i].chemical_system.split("-"))], candidates[i], energies[i])
        for i in sample
    ]
    scores = np.empty(len(sample))
    with Clock() as clock:
        for k, (diagram, comp, energy) in enumerate(jobs):
            candidate = PDEntry(comp, energy * comp.num_atoms)
            scores[k] = diagram.get_e_above_hull(candidate, allow_negative=True)
    return clock, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=100_000)
    parser.add_argument("--systems", type=int, default=200)
    parser.add_argument("--reference", type=int, default=10_000)
    parser.add_argument("--sample", type=int, default=2_000, help="candidates given to pymatgen")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each (medians)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    entries, candidates, energies = make_campaign(
        args.systems, args.reference, args.candidates, args.seed
    )
    n_el = np.bincount([len(c) for c in candidates], minlength=5)[2:]
    print(
        f"reference {len(entries)} entries; {args.candidates} candidates over {args.systems} "
        f"systems (binary/ternary/quaternary candidates: {n_el.tolist()})"
    )
    sample = np.random.default_rng(args.seed + 1).choice(
        args.candidates, min(args.sample, args.candidates), replace=False
    )
    # The two are timed alternately, so both see the same load on a shared machine.
    ours_runs, pmg_runs = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        diagrams, build = build_diagrams(entries, candidates, sample)
        for _ in range(args.repeats):
            ours_runs.append(run_hullset(entries, candidates, energies))
            pmg_runs.append(run_pymatgen(diagrams, candidates, energies, sample))
    max_diff = float(np.max(np.abs(ours_runs[0][2][sample] - pmg_runs[0][1])))
    agree = max_diff <= AGREEMENT_TOL
    print(
        f"agreement on {len(sample)} sampled candidates: max |diff| {max_diff:.1e} eV/atom "
        f"({'within' if agree else 'OUTSIDE'} {AGREEMENT_TOL:g})"
    )
    print(f"medians of {args.repeats} alternating runs; per candidate in microseconds\n")

    print(f"{'':36s}{'wall':>10s}{'cpu':>10s}")
    rows = {}
    for kind in ("wall", "cpu"):
        ours = np.array([getattr(r[1], kind) for r in ours_runs]) / args.candidates
        pmg = np.array([getattr(r[0], kind) for r in pmg_runs]) / len(sample)
        rows[kind] = (float(np.median(ours)), float(np.median(pmg)), pmg / ours)
    print(
        f"{'HullSet, hull builds included':36s}"
        f"{rows['wall'][0] * 1e6:10.2f}{rows['cpu'][0] * 1e6:10.2f}"
    )
    print(
        f"{'pymatgen get_e_above_hull loop':36s}"
        f"{rows['wall'][1] * 1e6:10.1f}{rows['cpu'][1] * 1e6:10.1f}"
    )
    for kind in ("wall", "cpu"):
        ours, pmg, paired = rows[kind]
        print(
            f"speed-up ({kind}): {pmg / ours:.0f}x "
            f"(each run: {', '.join(f'{x:.0f}x' for x in paired)})"
        )
    load_s = float(np.median([r[0].wall for r in ours_runs]))
    score_s = float(np.median([r[1].wall for r in ours_runs]))
    print(
        f"\nwhole set, wall: HullSet {score_s + load_s:.2f} s ({load_s:.2f} s loading "
        f"{len(entries)} reference entries + {score_s:.2f} s scoring {args.candidates}); "
        f"pymatgen {rows['wall'][1] * args.candidates:.1f} s extrapolated "
        f"+ {build.wall:.2f} s building {len(diagrams)} PhaseDiagrams"
    )
    print("load average (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    if not agree:
        raise SystemExit(f"HullSet and pymatgen differ by {max_diff:.1e} eV/atom")


if __name__ == "__main__":
    main()
