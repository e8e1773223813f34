"""Generator and deduplication throughput, side by side with pymatgen's StructureMatcher.

Prints, on one core (all calls are single-threaded):
  1. candidates per second of each generator from 1,000 shipped seed parents (time-capped);
  2. deduplication cost per candidate as the seen-set grows (10^3, 10^4, 10^5; --quick stops
     at 10^4), on SAPS candidates of the same parents (real decorations, shuffled);
  3. Deduplicator vs StructureMatcher.group_structures on the same 2,000 candidates, with a
     check that both give the same groups.

Run: python benchmarks/generators.py [--quick] [--seconds 20]
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import time
from collections import Counter

from pymatgen.analysis.structure_matcher import StructureMatcher

from hullhunter.generators import (
    Deduplicator,
    GenerationStats,
    decorate_prototypes,
    enumerate_compositions,
    load_seeds,
    random_structures,
    saps,
    substitute,
)
from hullhunter.generators.substitution import get_model


def pick_parents(n: int, max_sites: int = 40) -> list:
    """n shipped seeds with at least two elements and at most max_sites sites, fixed shuffle."""
    seeds = [s for s in load_seeds() if len(s.elements) > 1 and len(s.structure) <= max_sites]
    random.Random(0).shuffle(seeds)
    return seeds[:n]


def timed(stream, seconds: float) -> tuple[list, float]:
    """Consume a candidate stream for at most ``seconds``; returns (items, elapsed)."""
    items, start = [], time.perf_counter()
    for item in stream:
        items.append(item)
        if time.perf_counter() - start > seconds:
            break
    return items, time.perf_counter() - start


def throughput(parents: list, seconds: float) -> None:
    get_model("gnome")  # build the shared model outside the timings
    print(f"\n== 1. candidates per second, {len(parents)} seed parents, <= {seconds:.0f} s each")
    print(f"{'generator':<44}{'candidates':>11}{'seconds':>9}{'per s':>9}  skipped")
    rows = {}
    runs = {
        "substitute (GNoME model)": lambda st: substitute(parents, stats=st),
        "substitute (original Hautier model)": lambda st: substitute(
            parents, model="hautier", stats=st
        ),
        "saps symmetry (cap 200/parent)": lambda st: saps(parents, max_per_parent=200, stats=st),
        "saps orbits (cap 200/parent)": lambda st: saps(
            parents, mode="orbits", max_per_parent=200, stats=st
        ),
        "decorate_prototypes (parents; Li Na Mg Mn O S)": lambda st: decorate_prototypes(
            parents, ["Li", "Na", "Mg", "Mn", "O", "S"], stats=st
        ),
        "enumerate_compositions (8 elements, <=3, <=12 at.)": lambda st: enumerate_compositions(
            ["Li", "Na", "Mg", "Mn", "Fe", "O", "S", "P"], stats=st
        ),
        "random_structures (pyxtal; 5 compositions)": lambda st: itertools.chain.from_iterable(
            random_structures(f, n=20, seed=0, stats=st)
            for f in ["NaCl", "Li2O", "SrTiO3", "Li3PS4", "MgAl2O4"]
        ),
    }
    for name, make in runs.items():
        stats = GenerationStats()
        items, elapsed = timed(make(stats), seconds)
        rows[name] = (len(items), elapsed)
        skipped = ", ".join(f"{k} {v}" for k, v in stats.skipped.most_common(3))
        print(f"{name:<44}{len(items):>11}{elapsed:>9.1f}{len(items) / elapsed:>9.0f}  {skipped}")
    n = rows["substitute (GNoME model)"][0] + rows["saps symmetry (cap 200/parent)"][0]
    t = rows["substitute (GNoME model)"][1] + rows["saps symmetry (cap 200/parent)"][1]
    print(
        f"{'substitute + saps together':<44}{n:>11}{t:>9.1f}{n / t:>9.0f}  (target >= 1000/s/core)"
    )


def candidate_pool(parents: list, size: int) -> list:
    """``size`` substitution + SAPS candidates, shuffled so any window has the same mix."""
    pool = list(itertools.islice(saps(parents, max_per_parent=300), size))
    pool += list(itertools.islice(substitute(parents), max(0, size - len(pool))))
    random.Random(1).shuffle(pool)
    return pool


def dedup_scaling(parents: list, sizes: list[int], window: int = 500) -> None:
    print(
        f"\n== 2. dedup cost per candidate as the seen-set grows (mean/median over {window} adds)"
    )
    start = time.perf_counter()
    pool = candidate_pool(parents, sizes[-1] + window)
    print(
        f"   {len(pool)} candidates ({dict(Counter(c.generator for c in pool))}) from "
        f"{len(parents)} parents: SAPS (cap 300/parent), then full substitutions if short; "
        f"shuffled; made in {time.perf_counter() - start:.0f} s"
    )
    if len(pool) < sizes[-1] + window:
        print(f"   only {len(pool)} candidates from these parents; sizes capped")
    dedup = Deduplicator()
    position = 0
    print(f"{'seen':>8}{'mean ms':>10}{'median ms':>11}{'fits/cand':>11}{'duplicates':>12}")
    for size in sizes:
        while position < min(size, len(pool) - window):
            dedup.add(pool[position].structure, str(position))
            position += 1
        fits_before, dups_before = dedup.stats["fits"], dedup.stats["duplicates"]
        costs = []
        for candidate in pool[position : position + window]:
            start = time.perf_counter()
            dedup.add(candidate.structure, str(position))
            costs.append(time.perf_counter() - start)
            position += 1
        mean_ms, median_ms = 1e3 * statistics.mean(costs), 1e3 * statistics.median(costs)
        fits = (dedup.stats["fits"] - fits_before) / window
        duplicates = dedup.stats["duplicates"] - dups_before
        print(
            f"{position - window:>8}{mean_ms:>10.2f}{median_ms:>11.2f}{fits:>11.2f}{duplicates:>12}"
        )


def comparison_set(parents: list, size: int, per_parent: int = 20) -> list:
    """Candidates parent by parent (substitution and SAPS of the same parent overlap at k = n_A)."""
    out = []
    for parent in parents:
        out += list(itertools.islice(substitute([parent]), per_parent // 2))
        out += list(itertools.islice(saps([parent], max_per_parent=per_parent), per_parent))
        if len(out) >= size:
            break
    return out[:size]


def versus_group_structures(parents: list, size: int) -> None:
    print(
        f"\n== 3. Deduplicator vs StructureMatcher.group_structures on the same {size} candidates"
    )
    candidates = comparison_set(parents, size)
    structures = [c.structure for c in candidates]
    start = time.perf_counter()
    dedup = Deduplicator()
    owner = {}
    for i, structure in enumerate(structures):
        owner[i] = dedup.add(structure, str(i)) or str(i)
    ours_s = time.perf_counter() - start
    ours = Counter(owner.values())
    start = time.perf_counter()
    groups = StructureMatcher().group_structures(structures)
    theirs_s = time.perf_counter() - start
    index = {id(s): i for i, s in enumerate(structures)}
    theirs = {frozenset(index[id(s)] for s in group) for group in groups}
    ours_groups: dict[str, set[int]] = {}
    for i, rep in owner.items():
        ours_groups.setdefault(rep, set()).add(i)
    same = theirs == {frozenset(g) for g in ours_groups.values()}
    print(f"{'method':<34}{'seconds':>9}{'groups':>8}{'ms/candidate':>14}")
    for name, seconds, n_groups in [
        ("Deduplicator (key + matcher)", ours_s, len(ours)),
        ("StructureMatcher.group_structures", theirs_s, len(groups)),
    ]:
        print(f"{name:<34}{seconds:>9.1f}{n_groups:>8}{1e3 * seconds / size:>14.2f}")
    print(f"speed-up {theirs_s / ours_s:.1f}x (target >= 20x); same groups: {same}")
    print(f"   Deduplicator decisions: {dict(dedup.stats)}")
    if not same:
        ours_set = {frozenset(g) for g in ours_groups.values()}
        only_theirs, only_ours = len(theirs - ours_set), len(ours_set - theirs)
        print(f"   groups only in pymatgen: {only_theirs}, only in ours: {only_ours}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="stop the seen-set at 10^4")
    parser.add_argument("--seconds", type=float, default=10.0, help="time cap per generator")
    parser.add_argument("--parents", type=int, default=1000)
    parser.add_argument("--compare", type=int, default=2000, help="candidates for section 3")
    args = parser.parse_args()
    parents = pick_parents(args.parents)
    throughput(parents, args.seconds)
    dedup_scaling(parents, [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000])
    versus_group_structures(parents, args.compare)


if __name__ == "__main__":
    main()
