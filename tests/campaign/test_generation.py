"""Generation never runs dry: round after round, the generators reach new candidates while
unseen ones exist, and parents come from the known world as well as the campaign's hull."""

from __future__ import annotations

import pytest

from hullhunter.campaign_config import parse_config
from hullhunter.documents import Campaign, Candidate, Material
from hullhunter.settings import get_settings
from hullhunter.workflows.oracles import OracleContext
from hullhunter.workflows.round import generate, hull, relax, screen

pytestmark = pytest.mark.slow


def test_second_round_generates_new_candidates_from_parents_near_and_far(database):
    config = parse_config(
        {
            "name": "deep",
            "chemical_space": {"systems": ["Li-Co-O"]},
            "seeds": {"max_seeds": 6, "elemental_polymorphs": 1},
            "generators": {
                "substitution": {"limit": 12},
                "saps": {"limit": 12, "max_per_parent": 4},
                "prototypes": {"limit": 12},
            },
            "oracle": {"fmax": 0.3, "max_steps": 30},
        }
    )
    Campaign(name="deep", config=config.model_dump(mode="json")).save()
    generate.generate("deep", 0, config)
    seeds = screen.screen("deep", 0, config)
    relax.relax("deep", 0, seeds, config.oracle, OracleContext.for_round(get_settings(), "deep", 0))
    hull.update_hull("deep", 0)
    campaign_parents = set(Material.objects(campaign="deep").distinct("material_id"))

    first = generate.generate("deep", 1, config)
    # Nothing was relaxed in between: the same parents and hull. Deterministic generators
    # used to regenerate round 1's list here, and deduplication left almost nothing.
    second = generate.generate("deep", 2, config)
    for generator in ("substitution", "saps", "prototype"):
        assert first.get(generator, 0) == 12, first
        assert second.get(generator, 0) >= first[generator] / 2, second

    made = list(Candidate.objects(campaign="deep", round__in=[1, 2]))
    assert (
        len({c.candidate_id for c in made})
        == len(made)
        == sum(first.get(g, 0) + second.get(g, 0) for g in ("substitution", "saps", "prototype"))
    )
    space = {"Li", "Co", "O"}
    assert all(set(c.elements) <= space for c in made)
    # substitution carries crystals of analogous systems (outside the campaign) into Li-Co-O
    substituted = [c for c in made if c.generator == "substitution"]
    assert any(c.parent_id not in campaign_parents for c in substituted)


def _round_one(name: str) -> tuple[dict[str, int], list[tuple]]:
    """Counts of a round-1 generation, and what it stored (campaign-independent)."""
    counts = generate.generate(name, 1, _limited(name))
    stored = sorted(
        (c.generator, c.parent_id, c.formula, str(c.structure))
        for c in Candidate.objects(campaign=name, round=1)
    )
    return counts, stored


def _limited(name: str):
    return parse_config(
        {
            "name": name,
            "chemical_space": {"systems": ["Li-Co-O"]},
            "seeds": {"max_seeds": 6, "elemental_polymorphs": 1},
            "generators": {
                "substitution": {"limit": 9},
                "saps": {"limit": 9, "max_per_parent": 3},
                "prototypes": {"limit": 9},
            },
        }
    )


def test_a_rerun_of_generation_stores_nothing_more_and_resumes_after_a_crash(database, monkeypatch):
    for name in ("whole", "crashed"):
        Campaign(name=name, config=_limited(name).model_dump(mode="json")).save()
        generate.generate(name, 0, _limited(name))
    counts, stored = _round_one("whole")
    assert sum(counts.get(g, 0) for g in ("substitution", "saps", "prototype")) == 27
    # a rerun of a complete round replays it: the same counts, nothing stored again
    assert _round_one("whole") == (counts, stored)

    # a crash after two bulk writes of 4, then the rerun stores exactly what was lost
    writes = []

    def crash_after_two(documents, novelty):
        if len(writes) == 2:
            raise RuntimeError("worker lost")
        writes.append(len(documents))
        Candidate.objects.insert(documents, load_bulk=False)
        novelty.stored(d.candidate_id for d in documents)

    monkeypatch.setattr(generate, "STORE_CHUNK", 4)
    monkeypatch.setattr(generate, "_insert", crash_after_two)
    with pytest.raises(RuntimeError, match="worker lost"):
        generate.generate("crashed", 1, _limited("crashed"))
    assert Candidate.objects(campaign="crashed", round=1).count() == 8
    monkeypatch.undo()
    assert _round_one("crashed") == (counts, stored)
