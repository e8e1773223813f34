"""SAPS: symmetry-distinct partial substitutions, checked against StructureMatcher brute force."""

import itertools
from collections import Counter

import pytest
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure

from hullhunter.generators import GenerationStats, saps


def perovskite():
    return Structure.from_spacegroup(
        "Pm-3m", Lattice.cubic(3.9), ["Sr", "Ti", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]]
    )


def rocksalt_primitive_supercell():
    conventional = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    return conventional.get_primitive_structure() * (2, 2, 2)


def brute_force_groups(parent, old, new, k):
    """All k-subsets of old's sites replaced by new, grouped by StructureMatcher."""
    sites = [i for i, site in enumerate(parent) if site.specie.symbol == old]
    structures = []
    for subset in itertools.combinations(sites, k):
        s = parent.copy()
        for i in subset:
            s.replace(i, new)
        structures.append(s)
    return StructureMatcher().group_structures(structures)


@pytest.mark.parametrize(
    ("parent", "old", "new", "levels"),
    [
        (rocksalt_primitive_supercell(), "Na", "K", range(1, 9)),
        pytest.param(perovskite() * (2, 2, 2), "Sr", "Ba", range(1, 5), marks=pytest.mark.slow),
    ],
)
def test_saps_matches_brute_force_enumeration(parent, old, new, levels):
    candidates = list(saps([("p", parent)], replacements={old: [new]}, max_per_parent=None))
    by_k = {k: [c.structure for c in candidates if c.params["k"] == k] for k in levels}
    matcher = StructureMatcher()
    for k in levels:
        groups = brute_force_groups(parent, old, new, k)
        assert len(by_k[k]) == len(groups), f"k={k}"
        # one SAPS representative in each brute-force class
        hits = [sum(matcher.fit(rep, g[0]) for rep in by_k[k]) for g in groups]
        assert hits == [1] * len(groups), f"k={k}"


def test_orbits_mode_is_a_subset_and_cheaper():
    parent = perovskite() * (2, 1, 1)  # O has two Wyckoff orbits in the doubled cell's group
    symmetric = list(saps([parent], replacements={"O": ["F"]}, max_per_parent=None))
    orbits = list(saps([parent], replacements={"O": ["F"]}, mode="orbits", max_per_parent=None))
    assert 0 < len(orbits) < len(symmetric)
    matcher = StructureMatcher()
    for cand in orbits:
        assert any(matcher.fit(cand.structure, s.structure) for s in symmetric)
    full = [c for c in symmetric if c.params["k"] == c.params["n_sites"]]
    assert len(full) == 1 and full[0].formula == "SrTiF3"


def test_saps_with_model_filters_and_caps():
    parent = perovskite() * (2, 1, 1)
    allowed = ["Sr", "Ti", "O", "Ba", "Ca", "Zr", "Hf"]
    stats = GenerationStats()
    candidates = list(
        saps([("sto", parent)], known_formulas={"BaTiO3"}, allowed_elements=allowed, stats=stats)
    )
    assert candidates and stats.yielded == len(candidates)
    assert {c.params["with"] for c in candidates} <= {"Ba", "Ca", "Zr", "Hf"}
    assert "BaTiO3" not in {c.formula for c in candidates}
    assert {"Ba(SrTi2O6)", "SrTiO3"}.isdisjoint({c.formula for c in candidates})
    assert any(c.formula == "BaSrTi2O6" for c in candidates)
    capped = list(saps([parent], allowed_elements=allowed, max_per_parent=2))
    assert len(capped) == 2
    balanced = list(saps([parent], allowed_elements=[*allowed, "Nb"], charge_balance=True))
    assert balanced and all(c.structure.composition.oxi_state_guesses() for c in balanced)


def test_saps_levels_counted_when_too_large():
    parent = perovskite() * (3, 3, 1)  # 9 Sr sites
    stats = GenerationStats()
    candidates = list(saps([parent], replacements={"Sr": ["Ba"]}, max_subsets=50, stats=stats))
    levels = Counter(c.params["k"] for c in candidates)
    assert set(levels) == {1, 2, 7, 8, 9}  # C(9, k) > 50 for k = 3..6
    assert stats.skipped["saps_level_too_large"] == 4


def test_one_letter_elements_take_two_letter_replacements():
    parent = Structure(Lattice.cubic(4.2), ["K", "I"], [[0, 0, 0], [0.5, 0.5, 0.5]]) * (2, 1, 1)
    candidates = list(saps([parent], replacements={"K": ["Rb"]}))
    assert {c.formula for c in candidates} == {"KRbI2", "RbI"}
