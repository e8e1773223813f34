"""Generation fanned out by formula, on the real MongoDB: the shards of a round, run as the
round's jobs, store together exactly what one generation job stores when no limit binds,
and the screen receives their counts added up; a shard run again stores nothing more."""

from __future__ import annotations

import pytest
from jobflow import Flow, run_locally

from hullhunter.campaign_config import CampaignConfig, parse_config
from hullhunter.documents import Campaign, Candidate
from hullhunter.workflows import jobs
from hullhunter.workflows.round import generate

pytestmark = pytest.mark.slow

MADE = ("substitution", "saps", "prototype")


def config(name: str, shards: int) -> CampaignConfig:
    """A Na-Cl campaign whose generator limits nothing reaches."""
    return parse_config(
        {
            "name": name,
            "chemical_space": {"systems": ["Na-Cl"]},
            "seeds": {"max_seeds": 4, "elemental_polymorphs": 1},
            "generators": {
                "substitution": {"limit": 10_000},
                "saps": {"limit": 10_000, "max_per_parent": 10_000},
                "prototypes": {"limit": 10_000, "max_parent_sites": 4},
            },
            "workers": {"generation_shards": shards},
        }
    )


def seeded(name: str, shards: int) -> CampaignConfig:
    settings = config(name, shards)
    Campaign(name=name, config=settings.model_dump(mode="json")).save()
    generate.generate(name, 0, settings)
    return settings


def made(name: str) -> list[tuple]:
    return sorted(
        (c.generator, c.parent_id, c.formula, str(c.structure))
        for c in Candidate.objects(campaign=name, round=1)
    )


def test_formula_shards_store_together_what_one_job_stores(database):
    one_job = generate.generate("whole", 1, seeded("whole", 1))
    assert sum(one_job.get(g, 0) for g in MADE) > 100

    seeded("sharded", 3)
    generate_job = jobs.generate_job("sharded", 1)
    screen_reads = jobs.add_counts_job([generate_job.output])  # the reference screen_job takes
    responses = run_locally(Flow([generate_job, screen_reads]), ensure_success=True)
    replaced = responses[generate_job.uuid][1].replace
    assert [job.name for job in replaced.jobs] == ["generate_shard_job"] * 3 + ["add_counts_job"]
    assert responses[screen_reads.uuid][1].output.counts == one_job
    assert made("sharded") == made("whole")
    by_shard = [responses[job.uuid][1].output.counts for job in replaced.jobs[:3]]
    assert all(sum(counts.get(g, 0) for g in MADE) for counts in by_shard)

    # a shard run again stores nothing more and counts what its first run stored
    stored = Candidate.objects(campaign="sharded").count()
    again = generate.generate("sharded", 1, config("sharded", 3), generate.Shard(1, 3))
    assert Candidate.objects(campaign="sharded").count() == stored
    assert {g: again.get(g, 0) for g in MADE} == {g: by_shard[1].get(g, 0) for g in MADE}
