"""Li-ion conductor screen on known fast and poor conductors: stage verdicts and ROC-AUC.

Structures are the Materials Project ones shipped in hullhunter's seed file (crystal-toolkit's
matbench_dielectric set and pymatgen's own Li10GeP2S12), looked up by seed id, so nothing is
downloaded. Each material runs through ``li_ion_conductor_candidates`` (stability waived:
these are known compounds); the table prints stage 1 (chemistry), stage 2 (BVSE percolation
barrier) and the rank. The descriptor's ranking quality is the ROC-AUC of -barrier for fast
vs poor, printed beside a naive peer in the same run (the Li atom fraction, which the old
composition-only screen used).

Labels follow room-temperature conductivities (order of magnitude; "fast" means about
1e-4 S/cm or more). The fast ones, Li6PS5I and LiI carry a literature source; the other
poor ones are textbook insulating Li salts whose sigma column is an order-of-magnitude
class label that was not checked against a source offline.

    python benchmarks/conductors.py
"""

from __future__ import annotations

import time

from hullhunter.generators.seeds import load_seeds
from hullhunter.workflows.applications import li_ion_conductor_candidates

# seed id: (label, fast?, room-temperature sigma in S/cm (order of magnitude), source)
KNOWN = {
    "matbench_dielectric:2008": (
        "alpha-Li3N",
        True,
        1e-3,
        "Alpen, Rabenau, Talat, Appl. Phys. Lett. 30, 621 (1977)",
    ),
    "matbench_dielectric:2840": (
        "Li6PS5Cl",
        True,
        1e-3,
        "Boulineau et al., Solid State Ionics 221, 1 (2012)",
    ),
    "matbench_dielectric:4187": (
        "Li6PS5Br",
        True,
        1e-3,
        "Deiseroth et al., Angew. Chem. Int. Ed. 47, 755 (2008)",
    ),
    "matbench_dielectric:336": ("Li3ErCl6", True, 3e-4, "Muy et al., iScience 16, 270 (2019)"),
    "pymatgen:Li10GeP2S12": (
        "Li10GeP2S12",
        True,
        1e-2,
        "Kamaya et al., Nat. Mater. 10, 682 (2011)",
    ),
    "matbench_dielectric:4363": ("Li6PS5I", False, 1e-6, "Kraft et al., JACS 139, 10909 (2017)"),
    "matbench_dielectric:4602": (
        "LiF",
        False,
        1e-9,
        "class label: a textbook Li-salt insulator (value not checked offline)",
    ),
    "matbench_dielectric:4576": (
        "LiCl",
        False,
        1e-9,
        "class label: a textbook Li-salt insulator (value not checked offline)",
    ),
    "matbench_dielectric:4528": (
        "LiBr",
        False,
        1e-8,
        "class label: a textbook Li-salt insulator (value not checked offline)",
    ),
    "matbench_dielectric:3363": (
        "LiI",
        False,
        1e-7,
        "Liang, J. Electrochem. Soc. 120, 1289 (1973)",
    ),
    "matbench_dielectric:4595": (
        "Li2O",
        False,
        1e-9,
        "class label: a textbook Li-salt insulator (value not checked offline)",
    ),
    "matbench_dielectric:4583": (
        "Li2S",
        False,
        1e-10,
        "class label: a textbook Li-salt insulator (value not checked offline)",
    ),
    "matbench_dielectric:406": (
        "Li2CO3",
        False,
        1e-8,
        "class label: a textbook Li-salt insulator (value not checked offline)",
    ),
    "matbench_dielectric:3263": (
        "Li3PO4",
        False,
        1e-10,
        "class label: a textbook Li-salt insulator (value not checked offline)",
    ),
    "matbench_dielectric:4317": (
        "gamma-LiAlO2",
        False,
        1e-10,
        "class label: a textbook Li-salt insulator (value not checked offline)",
    ),
    "matbench_dielectric:793": (
        "Li2SiO3",
        False,
        1e-9,
        "class label: a textbook Li-salt insulator (value not checked offline)",
    ),
    "matbench_dielectric:1708": (
        "Li4SiO4",
        False,
        1e-9,
        "class label: a textbook Li-salt insulator (value not checked offline)",
    ),
    "matbench_dielectric:3435": (
        "LiNbO3",
        False,
        1e-10,
        "class label: a textbook Li-salt insulator (value not checked offline)",
    ),
    "matbench_dielectric:4046": (
        "LiTaO3",
        False,
        1e-10,
        "class label: a textbook Li-salt insulator (value not checked offline)",
    ),
    "matbench_dielectric:2964": (
        "LiYF4",
        False,
        1e-10,
        "class label: a textbook Li-salt insulator (value not checked offline)",
    ),
    "matbench_dielectric:1933": (
        "LiBO2",
        False,
        1e-9,
        "class label: a textbook Li-salt insulator (value not checked offline)",
    ),
    "matbench_dielectric:4432": (
        "Li2B4O7",
        False,
        1e-9,
        "class label: a textbook Li-salt insulator (value not checked offline)",
    ),
}


def roc_auc(scores: list[float], positives: list[bool]) -> float:
    """ROC-AUC as the Mann-Whitney probability that a positive outscores a negative."""
    pos = [s for s, p in zip(scores, positives, strict=True) if p]
    neg = [s for s, p in zip(scores, positives, strict=True) if not p]
    if not pos or not neg:
        return float("nan")
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def main() -> None:
    seeds = {seed.id: seed for seed in load_seeds() if seed.id in KNOWN}
    missing = sorted(set(KNOWN) - set(seeds))
    if missing:
        raise SystemExit(f"seed ids not in the shipped seed file: {missing}")
    ids = list(KNOWN)
    start = time.perf_counter()
    records = li_ion_conductor_candidates(
        [seeds[i].structure for i in ids], ids=ids, require_stable=False
    )
    elapsed = time.perf_counter() - start
    print(
        f"Li-ion conductor screen on {len(ids)} known materials "
        f"({sum(v[1] for v in KNOWN.values())} fast, {sum(not v[1] for v in KNOWN.values())} "
        f"poor), {elapsed:.0f} s"
    )
    print(
        f"{'rank':>4}  {'material':<13}{'class':<6}{'sigma':>8}  {'Li frac':>7}  "
        f"{'barrier':>8}  stage 1 / stage 2"
    )
    scored = []
    for record in records:
        label, fast, sigma, _ = KNOWN[record.material_id]
        barrier = record.details.get("barrier_ev")
        fraction = record.details.get("ion_fraction")
        rank = record.details.get("rank", "-")
        stages = " | ".join(
            r.removeprefix("stage 1: ").removeprefix("stage 2: ") for r in record.reasons
        )
        print(
            f"{rank!s:>4}  {label:<13}{'fast' if fast else 'poor':<6}{sigma:>8.0e}  "
            f"{'' if fraction is None else f'{fraction:.3f}':>7}  "
            f"{'' if barrier is None else f'{barrier:.2f} eV':>8}  {stages}"
        )
        if barrier is not None:
            scored.append((-barrier, -record.details["barriers_ev"]["E_3D"], fraction, fast))
    labels = [row[-1] for row in scored]
    print(
        f"\nROC-AUC fast vs poor over the {len(scored)} materials with a barrier: "
        f"BVSE barrier (the screen's figure) {roc_auc([row[0] for row in scored], labels):.2f}, "
        f"peer Li atom fraction {roc_auc([row[2] for row in scored], labels):.2f} "
        "(target >= 0.8); for information, the 3-D barrier alone "
        f"{roc_auc([row[1] for row in scored], labels):.2f}"
    )
    unscreened = [KNOWN[r.material_id][0] for r in records if r.details.get("barrier_ev") is None]
    print(f"no barrier (stage 1 or 2 gave a reason instead): {', '.join(unscreened) or 'none'}")
    print("sources:")
    for label, _, sigma, source in KNOWN.values():
        print(f"  {label}: {sigma:.0e} S/cm, {source}")


if __name__ == "__main__":
    main()
