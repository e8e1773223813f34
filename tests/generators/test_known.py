"""The known world and novelty classes (hullhunter.generators.known), without MongoDB."""

from __future__ import annotations

import pytest
from pymatgen.core import Lattice, Structure

from hullhunter.documents import Candidate, Material
from hullhunter.generators.known import (
    NOVELTY_CLASSES,
    KnownWorld,
    known_world,
    mp_compositions,
)
from hullhunter.workflows.round.records import SELECTION_KINDS

FIVE_SITES = [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5], [0.5, 0.5, 0.5]]


def test_known_composition_without_a_structure_is_a_new_polymorph_never_novel():
    world = KnownWorld(compositions=mp_compositions())
    mn2o3 = Structure(Lattice.cubic(4.0), ["Mn", "Mn", "O", "O", "O"], FIVE_SITES)
    verdict = world.classify(mn2o3)  # in MP's formula lists, no structure to compare
    assert verdict.novelty == "new_polymorph" and verdict.compared == 0
    assert verdict.known_in == (
        "mp computed entries (pymatgen)",
        "mp experimental enthalpies (pymatgen)",
    )
    mno3 = Structure(Lattice.cubic(3.0), ["Mn", "O", "O", "O"], FIVE_SITES[:4])
    assert world.classify(mno3).novelty == "novel"


@pytest.mark.slow
def test_user_seeds_and_every_shipped_seed_are_known(tmp_path):
    builtin = known_world()
    # all shipped seeds, not only a campaign's elements: 4,215 formulas plus MP's lists
    assert len(builtin) > 5000 and builtin.known_in("CsH") and builtin.known_in("GaTe")
    invented = Structure(Lattice.cubic(4.6), ["Li", "Na", "Mn", "O", "O"], FIVE_SITES)
    assert builtin.classify(invented).novelty == "novel"
    path = tmp_path / "mine.json"
    path.write_text(invented.to_json())
    mine = known_world(str(path))
    relaxed = invented.copy()
    relaxed.scale_lattice(0.95 * relaxed.volume)
    verdict = mine.classify(relaxed)
    assert verdict.novelty == "rediscovered" and verdict.known_in == ("user seeds",)
    assert verdict.match_id is not None


def test_documents_accept_exactly_the_library_kinds():
    assert Material.novelty.choices == NOVELTY_CLASSES
    assert Candidate.selected_as.choices == SELECTION_KINDS
