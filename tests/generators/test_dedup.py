"""Deduplicator: merges supercells and rotated copies, keeps polymorphs apart."""

import numpy as np
import pytest
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure
from pymatgen.core.operations import SymmOp

from hullhunter.generators import Candidate, Deduplicator, saps


@pytest.fixture
def perovskite():
    return Structure.from_spacegroup(
        "Pm-3m", Lattice.cubic(3.9), ["Sr", "Ti", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]]
    )


def test_merges_supercell_rotated_and_shifted_copies(perovskite):
    dedup = Deduplicator()
    assert dedup.add(perovskite, "sto") is None
    assert dedup.add(perovskite * (2, 1, 3), "super") == "sto"
    rotated = perovskite.copy()
    rotated.apply_operation(SymmOp.from_axis_angle_and_translation([1, 2, 3], 37.0))
    assert dedup.add(rotated, "rotated") == "sto"
    shifted = perovskite.copy()
    shifted.translate_sites(range(len(shifted)), [0.5, 0.5, 0.5])  # Ti now at the origin
    assert dedup.add(shifted, "shifted") == "sto"
    assert len(dedup) == 1 and dedup.stats["duplicates"] == 3
    assert dedup.key(perovskite)[0] == dedup.key(rotated * (1, 2, 1))[0]


def test_keeps_polymorphs_and_decorations_apart():
    zincblende = Structure.from_spacegroup(
        "F-43m", Lattice.cubic(5.4), ["Zn", "S"], [[0, 0, 0], [0.25] * 3]
    )
    rocksalt = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.4), ["Zn", "S"], [[0, 0, 0], [0.5] * 3]
    )
    cscl = Structure(Lattice.cubic(3.3), ["Zn", "S"], [[0, 0, 0], [0.5] * 3])
    dedup = Deduplicator()
    assert [dedup.add(s, n) for s, n in [(zincblende, "zb"), (rocksalt, "rs"), (cscl, "cscl")]] == [
        None
    ] * 3
    assert dedup.add(rocksalt.copy(), "rs2") == "rs"
    assert len(dedup) == 3


def test_unique_agrees_with_group_structures_on_saps_candidates(perovskite):
    parent = perovskite * (2, 2, 1)
    candidates = list(
        saps([parent], replacements={"Sr": ["Ba"], "Ti": ["Zr"]}, max_per_parent=None)
    )
    rng = np.random.default_rng(0)
    # add rotated supercell copies of a random third: these must all be recognised
    copies = []
    for c in rng.choice(candidates, size=len(candidates) // 3, replace=False):
        s = c.structure * (1, 1, 2)
        s.apply_operation(
            SymmOp.from_axis_angle_and_translation(rng.normal(size=3), rng.uniform(0, 180))
        )
        copies.append(Candidate(s, "copy", c.parent_id, {}))
    stream = candidates + copies
    unique = list(Deduplicator().unique(stream))
    groups = StructureMatcher().group_structures([c.structure for c in stream])
    assert len(unique) == len(groups)
    assert all(c.generator == "saps" for c in unique)


def _partition(dedup, structures):
    owner = {}
    for i, structure in enumerate(structures):
        owner.setdefault(dedup.add(structure, str(i)) or str(i), set()).add(i)
    return {frozenset(group) for group in owner.values()}


def test_same_groups_as_group_structures_on_a_distorted_parent():
    # A rocksalt supercell strained by a few percent and jittered: exact symmetry is gone, so
    # SAPS (symprec 0.01) yields decorations that StructureMatcher's tolerances still merge.
    rng = np.random.default_rng(3)
    parent = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3]
    )
    parent = Structure(
        Lattice.orthorhombic(5.6, 5.75, 5.5),
        parent.species,
        parent.frac_coords + rng.normal(scale=0.004, size=(len(parent), 3)),
    )
    structures = [
        c.structure
        for c in saps([parent], replacements={"Na": ["K"], "Cl": ["Br"]}, max_per_parent=None)
    ]
    dedup = Deduplicator()
    groups = StructureMatcher().group_structures(structures)
    index = {id(s): i for i, s in enumerate(structures)}
    assert _partition(dedup, structures) == {frozenset(index[id(s)] for s in g) for g in groups}
    assert len(groups) < len(structures)  # the distortion left pymatgen-equivalent copies
    assert dedup.stats["mapped"] + dedup.stats["fits"] > 0


def test_unique_names_and_ids(perovskite):
    dedup = Deduplicator()
    out = list(dedup.unique([perovskite, perovskite * (1, 1, 2)], ids=["a", "b"]))
    assert len(out) == 1
    assert dedup.add(perovskite, "c") == "a"


def test_pair_fingerprint_invariances_and_decorations(perovskite):
    from hullhunter.generators.dedup import pair_fingerprint

    base = pair_fingerprint(perovskite)
    copy = perovskite * (1, 2, 2)
    copy.apply_operation(SymmOp.from_axis_angle_and_translation([1, 2, 3], 41.0))
    copy.scale_lattice(copy.volume * 1.3)
    assert np.allclose(pair_fingerprint(copy), base)
    candidates = list(
        saps([perovskite * (2, 2, 2)], replacements={"Sr": ["Ba"]}, max_per_parent=None)
    )
    two = [pair_fingerprint(c.structure) for c in candidates if c.params["k"] == 2]
    assert len(two) == 3
    assert all(not np.allclose(a, b, rtol=0.02) for i, a in enumerate(two) for b in two[i + 1 :])


def test_whole_bucket_matching_gives_the_same_result(perovskite):
    candidates = list(
        saps([perovskite * (2, 2, 1)], replacements={"Sr": ["Ca"]}, max_per_parent=None)
    )
    copies = [c.structure * (1, 1, 2) for c in candidates]
    stream = [c.structure for c in candidates] + copies
    windowed = Deduplicator()
    exhaustive = Deduplicator(fingerprint_tol=None, max_fits=None)
    assert [windowed.add(s, str(i)) for i, s in enumerate(stream)] == [
        exhaustive.add(s, str(i)) for i, s in enumerate(stream)
    ]


def test_decorations_of_two_cells_of_one_parent_group_as_group_structures():
    # The same rocksalt cell twice, once shifted and strained by 2 %: two skeletons whose SAPS
    # decorations pair up through site maps rather than fits.
    rocksalt = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3]
    )
    other = Structure(
        Lattice.cubic(5.6 * 1.02), rocksalt.species, rocksalt.frac_coords + np.array([0.25, 0.1, 0])
    )
    structures = [
        c.structure
        for parent in (rocksalt, other)
        for c in saps([parent], replacements={"Na": ["K"]}, max_per_parent=None)
    ]
    dedup = Deduplicator()
    groups = StructureMatcher().group_structures(structures)
    index = {id(s): i for i, s in enumerate(structures)}
    assert _partition(dedup, structures) == {frozenset(index[id(s)] for s in g) for g in groups}
    assert len(groups) == len(structures) // 2
    assert dedup.stats["site_map_searches"] >= 1


def test_site_maps_lay_a_shifted_copy_onto_its_original():
    from hullhunter.generators.dedup import site_maps

    rocksalt = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3]
    )
    frac = rocksalt.frac_coords
    shifted = (frac + np.array([0.5, 0, 0])) % 1.0  # Na sites onto Cl sites
    permutations, displacements = site_maps(
        rocksalt.lattice.matrix, frac, rocksalt.lattice.matrix, shifted, StructureMatcher()
    )
    numbers = np.array(rocksalt.atomic_numbers)
    assert len(permutations) == 48 * 8  # point group x translations onto the 8 sites
    assert np.allclose(displacements, 0, atol=1e-6)
    images = numbers[permutations]
    swapped = np.where(numbers == 11, 17, 11)  # the shifted cell's own decoration
    assert any((image == swapped).all() for image in images)
    assert any((image == numbers).all() for image in images)


def test_disordered_structure_is_a_clear_error():
    disordered = Structure(
        Lattice.cubic(4.0), [{"Na": 0.5, "K": 0.5}, "Cl"], [[0, 0, 0], [0.5] * 3]
    )
    with pytest.raises(ValueError, match="ordered structures"):
        Deduplicator().add(disordered, "x")
