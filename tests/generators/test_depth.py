"""Generators go deeper instead of repeating: limits count accepted products only, parents
from the known world feed the target space, and the shipped oxidation table is pymatgen's."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from pymatgen.core import Lattice, Structure

from hullhunter.generators import (
    Candidate,
    GenerationContext,
    GenerationStats,
    GeneratorSettings,
    load_seeds,
    saps,
    substitute,
)
from hullhunter.generators.common import pymatgen_guess, shipped_guesses


class CountingSettings(GeneratorSettings):
    """A toy generator that ignores ``accept``: products p0, p1, ... of one parent."""

    def generate(self, context: GenerationContext) -> Iterator[Candidate]:
        parent = context.parents[0]
        for index in range(20):
            yield Candidate(parent.structure, "counting", parent.id, {"index": index})


def test_limit_counts_only_products_the_campaign_accepts():
    parent = load_seeds(elements=["Na", "Cl"])[0]
    refused = {0, 1, 2, 5}
    context = GenerationContext(
        parents=[parent], accept=lambda candidate: candidate.params["index"] not in refused
    )
    taken = [c.params["index"] for c in CountingSettings(limit=4).candidates(context)]
    assert taken == [3, 4, 6, 7]  # refused products do not use up the limit


def test_accept_is_what_saps_per_parent_cap_counts():
    parent = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    ).make_supercell([2, 1, 1])

    def key(candidate: Candidate) -> tuple:
        return candidate.params["k"], tuple(candidate.params["sites"])

    everything = [key(c) for c in saps([parent], replacements={"Na": ["K"]}, max_per_parent=100)]
    known = set(everything[:2])
    deeper = saps(
        [parent],
        replacements={"Na": ["K"]},
        max_per_parent=2,
        accept=lambda candidate: key(candidate) not in known,
    )
    assert len(everything) > 4
    assert [key(c) for c in deeper] == everything[2:4]  # the cap counts accepted products


def test_known_world_parents_carry_structures_into_the_target_space():
    world = [s for s in load_seeds() if s.elements in ({"Na", "Co", "O"}, {"K", "Co", "O"})]
    assert world, "the shipped seeds hold Na-Co-O / K-Co-O compounds"
    products = list(substitute(world, allowed_elements=["Li", "Co", "O"]))
    formulas = {c.structure.composition.reduced_formula for c in products}
    assert "LiCoO2" in formulas
    assert all({el.symbol for el in c.structure.composition} <= {"Li", "Co", "O"} for c in products)


def test_allowed_elements_only_prune_products_outside_them():
    seeds = load_seeds()
    parents = random.Random(3).sample([s for s in seeds if len(s.elements) in (2, 3, 4)], 150)
    allowed = {"Li", "Co", "O"}
    inside = {
        (c.parent_id, c.structure.composition.reduced_formula)
        for c in substitute(parents)
        if {el.symbol for el in c.structure.composition} <= allowed
    }
    stats = GenerationStats()
    restricted = {
        (c.parent_id, c.structure.composition.reduced_formula)
        for c in substitute(parents, allowed_elements=allowed, stats=stats)
    }
    assert restricted == inside and inside
    assert stats.skipped["cannot_enter_allowed_elements"] > 0


def test_ranked_substitution_is_most_probable_first_over_all_parents():
    parents = [s for s in load_seeds(elements=["Na", "K", "Cl", "Br", "O", "Mn"])][:12]
    ranked = [c.params["probability"] for c in substitute(parents, ranked=True)]
    by_parent = [c.params["probability"] for c in substitute(parents)]
    assert ranked == sorted(by_parent, reverse=True)


@pytest.mark.parametrize("seed", [0, 1])
def test_shipped_oxidation_table_is_pymatgens_guess(seed):
    table = shipped_guesses()
    assert len(table) > 3000
    for formula in random.Random(seed).sample(sorted(table), 15):
        assert table[formula] == pymatgen_guess(formula), formula
