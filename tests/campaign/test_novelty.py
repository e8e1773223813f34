"""The campaign's novelty test in bounded memory, on the real MongoDB: a deduplicator that
starts afresh many times stores exactly the candidates an unbounded one stores, whether the
duplicates it meets are already written or still waiting to be."""

from __future__ import annotations

import itertools

import pytest

from hullhunter import generators
from hullhunter.campaign_config import parse_config
from hullhunter.documents import Candidate
from hullhunter.workflows.round import generate

SPACE = ["Li", "Na", "K", "Mg", "O", "S"]


def products() -> list[generators.Candidate]:
    """Substitution products of small seeds, each made twice (the second copy a duplicate
    of the first) and some also as a supercell (a duplicate only a fit finds)."""
    small = [seed for seed in generators.load_seeds() if len(seed.structure) <= 8]
    made = list(itertools.islice(generators.substitute(small, allowed_elements=SPACE), 100))
    again = [generators.Candidate(c.structure.copy(), c.generator, c.parent_id) for c in made]
    larger = [
        generators.Candidate(c.structure * (2, 1, 1), c.generator, c.parent_id) for c in made[::5]
    ]
    return made + again + larger


def stored(name: str, max_remembered: int) -> tuple[list[str], generate.CampaignNovelty]:
    """Formulas of what one generation stores, and the novelty test it used."""
    config = parse_config({"name": name, "chemical_space": {"elements": SPACE}})
    novelty = generate.CampaignNovelty(name, config.chemical_space, max_remembered)
    generate.store_new_candidates(name, 1, filter(novelty, products()), novelty)
    formulas = sorted(Candidate.objects(campaign=name).distinct("formula"))
    counts = [f"{f} x{Candidate.objects(campaign=name, formula=f).count()}" for f in formulas]
    return counts, novelty


@pytest.mark.parametrize("store_chunk", [7, 1000])
def test_a_bounded_novelty_test_stores_what_an_unbounded_one_stores(
    database, monkeypatch, store_chunk
):
    # chunks of 7: duplicates meet written candidates; of 1000: candidates not yet written
    monkeypatch.setattr(generate, "STORE_CHUNK", store_chunk)
    unbounded, _ = stored("unbounded", max_remembered=10**9)
    bounded, novelty = stored("bounded", max_remembered=5)
    assert novelty.resets >= 10
    assert bounded == unbounded
    total = Candidate.objects(campaign="bounded").count()
    assert 0 < total < len(products()) / 2
    dedup = generators.Deduplicator()
    assert all(
        dedup.add(c.get_structure(), c.candidate_id) is None
        for c in Candidate.objects(campaign="bounded")
    )
