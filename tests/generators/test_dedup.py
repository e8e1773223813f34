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


def test_unique_names_and_ids(perovskite):
    dedup = Deduplicator()
    out = list(dedup.unique([perovskite, perovskite * (1, 1, 2)], ids=["a", "b"]))
    assert len(out) == 1
    assert dedup.add(perovskite, "c") == "a"
