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
import time
import warnings

import numpy as np
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition
from pymatgen.entries.computed_entries import ComputedEntry

from hullhunter.hull import HullSet

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


def run_hullset(
    entries: list[ComputedEntry], candidates: list[Composition], energies: np.ndarray
) -> tuple[float, float, np.ndarray]:
    """(seconds to load the reference, seconds to score every candidate, the scores)."""
    start = time.perf_counter()
    hull_set = HullSet(entries)
    loaded = time.perf_counter()
    scores = hull_set.decomposition_energy(candidates, energies)
    return loaded - start, time.perf_counter() - loaded, scores


def build_diagrams(
    entries: list[ComputedEntry], candidates: list[Composition], sample: np.ndarray
) -> tuple[dict[frozenset, PhaseDiagram], float]:
    """One pymatgen PhaseDiagram per chemical system of the sampled candidates, and seconds."""
    diagrams: dict[frozenset, PhaseDiagram] = {}
    element_sets = [frozenset(e.composition.chemical_system.split("-")) for e in entries]
    start = time.perf_counter()
    for i in sample:
        system = frozenset(candidates[i].chemical_system.split("-"))
        if system not in diagrams:
            members = [e for e, s in zip(entries, element_sets, strict=True) if s <= system]
            diagrams[system] = PhaseDiagram(members)
    return diagrams, time.perf_counter() - start


def run_pymatgen(
    diagrams: dict[frozenset, PhaseDiagram],
    candidates: list[Composition],
    energies: np.ndarray,
    sample: np.ndarray,
) -> tuple[float, np.ndarray, np.ndarray]:
    """(loop seconds, seconds per call, scores): one get_e_above_hull call per candidate."""
    jobs = [
        (diagrams[frozenset(candidates[i].chemical_system.split("-"))], candidates[i], energies[i])
        for i in sample
    ]
    per_call = np.empty(len(sample))
    scores = np.empty(len(sample))
    loop_start = time.perf_counter()
    for k, (diagram, comp, energy) in enumerate(jobs):
        t0 = time.perf_counter()
        scores[k] = diagram.get_e_above_hull(
            PDEntry(comp, energy * comp.num_atoms), allow_negative=True
        )
        per_call[k] = time.perf_counter() - t0
    return time.perf_counter() - loop_start, per_call, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=100_000)
    parser.add_argument("--systems", type=int, default=200)
    parser.add_argument("--reference", type=int, default=10_000)
    parser.add_argument("--sample", type=int, default=2_000, help="candidates given to pymatgen")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each (medians)")
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
    ours_runs, pmg_loops = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        diagrams, build_s = build_diagrams(entries, candidates, sample)
        for _ in range(args.repeats):
            ours_runs.append(run_hullset(entries, candidates, energies))
            loop_s, per_call, theirs = run_pymatgen(diagrams, candidates, energies, sample)
            pmg_loops.append(loop_s)
    load_s = float(np.median([r[0] for r in ours_runs]))
    score_s = float(np.median([r[1] for r in ours_runs]))
    ours = ours_runs[0][2]
    max_diff = float(np.max(np.abs(ours[sample] - theirs)))

    ours_per = score_s / args.candidates
    pmg_per = float(np.median(pmg_loops)) / len(sample)
    pmg_call_median = float(np.median(per_call))
    print(f"\nagreement on {len(sample)} sampled candidates: max |diff| {max_diff:.1e} eV/atom")
    print(f"medians of {args.repeats} runs each")
    print(f"{'':40s}{'per candidate':>15s}{'total':>12s}")
    print(
        f"{'HullSet.decomposition_energy (cold)':40s}{ours_per * 1e6:12.2f} us{score_s:10.2f} s"
        f"   (hull builds included; +{load_s:.2f} s loading the reference)"
    )
    print(
        f"{'pymatgen get_e_above_hull loop':40s}{pmg_per * 1e6:12.1f} us"
        f"{pmg_per * args.candidates:10.1f} s   (extrapolated from {len(sample)} calls;"
        f" median single call {pmg_call_median * 1e6:.1f} us)"
    )
    print(
        f"{'pymatgen PhaseDiagram builds':40s}{'':15s}{build_s:10.2f} s"
        f"   ({len(diagrams)} diagrams, not counted per candidate)"
    )
    paired = [
        (loop / len(sample)) / (run[1] / args.candidates)
        for run, loop in zip(ours_runs, pmg_loops, strict=True)
    ]
    print(
        f"\nspeed-up per candidate: {pmg_per / ours_per:.0f}x "
        f"(each run: {', '.join(f'{x:.0f}x' for x in paired)}); "
        f"whole set (reference loaded + {args.candidates} scored) in {score_s + load_s:.2f} s"
    )


if __name__ == "__main__":
    main()
