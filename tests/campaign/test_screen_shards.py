"""The screen at scale, on the real MongoDB: a pool scored in shards by separate jobs selects
exactly what one screen selects; a shard run again predicts nothing twice; the round's job
fans out when the pool is larger than a shard.

The campaign's model is the shipped prior and its reference hull the shipped seeds with the
prior's own CHGNet labels, so no training runs here.
"""

from __future__ import annotations

import gzip
import itertools
import json

import pytest

from hullhunter import generators
from hullhunter.campaign_config import parse_config
from hullhunter.documents import Calculation, Campaign, Candidate, chemsys_of, structure_dict
from hullhunter.models.prior import load_prior
from hullhunter.workflows import jobs
from hullhunter.workflows.model_store import latest_version, save_ensemble
from hullhunter.workflows.pretrain import LABELS_FILE
from hullhunter.workflows.round import screen
from hullhunter.workflows.round.generate import CampaignNovelty, store_new_candidates
from hullhunter.workflows.schemas import GenerateOutput

NAME = "shards"
SPACE = ["Li", "Na", "Mn", "O"]


@pytest.fixture
def campaign(database):
    """A campaign with 60 stored candidates, the prior as its model and seeds as its hull."""
    config = parse_config(
        {
            "name": NAME,
            "chemical_space": {"elements": SPACE, "max_elements": 3},
            "screening": {
                "top_k": 8,
                "exploration_fraction": 0.25,
                "max_decomposition_energy": 0.3,
                "tta": False,
                "chunk_size": 7,
                "shard_size": 20,
            },
        }
    )
    Campaign(name=NAME, config=config.model_dump(mode="json"), status="running").save()
    prior = load_prior()
    with gzip.open(prior.path / LABELS_FILE, "rt") as handle:
        energies = {seed_id: energy for seed_id, _, energy in json.load(handle)["labels"]}
    seeds = [seed for seed in generators.load_seeds(elements=SPACE) if seed.id in energies]
    for seed in seeds:
        composition = seed.structure.composition
        Calculation(
            candidate_id=seed.id, campaign=NAME, round=0, oracle="chgnet", state="completed",
            formula=composition.reduced_formula, chemsys=chemsys_of(composition),
            energy_per_atom=energies[seed.id], structure=structure_dict(seed.structure),
            converged=True,
        ).save()  # fmt: skip
    save_ensemble(NAME, 0, prior.structural, metrics={}, n_train=0)
    novelty = CampaignNovelty(NAME, config.chemical_space)
    small = [seed for seed in generators.load_seeds() if len(seed.structure) <= 8]
    made = itertools.chain(
        generators.substitute(small, allowed_elements=SPACE),
        generators.saps(
            [seed for seed in seeds if len(seed.structure) <= 12], allowed_elements=SPACE
        ),
    )
    accepted = itertools.islice(filter(novelty, made), 60)
    assert sum(store_new_candidates(NAME, 1, accepted, novelty).values()) == 60
    return config


def picks() -> list[tuple[str, str]]:
    return sorted(
        (c.candidate_id, c.selected_as) for c in Candidate.objects(campaign=NAME, status="selected")
    )


def test_sharded_scoring_selects_what_one_screen_selects(campaign, monkeypatch):
    whole = screen.screen(NAME, 1, campaign, torch_threads=1)
    assert len(whole) == 8
    one_screen = picks()
    assert {kind for _, kind in one_screen} == {"screened", "exploration"}

    Candidate.objects(campaign=NAME).update(
        set__status="generated", unset__selected_as=True, unset__scored_by_model=True
    )
    shards = screen.pool_shards(NAME, 1, campaign.screening.shard_size)
    assert len(shards) == 3  # 60 candidates in shards of 20
    read = [screen.score_shard(NAME, 1, campaign, lo, hi, torch_threads=1) for lo, hi in shards]
    assert read == [20, 20, 20]
    monkeypatch.setattr(screen, "_predict", lambda *args: pytest.fail("predicted twice"))
    assert screen.screen(NAME, 1, campaign, torch_threads=1) == whole
    assert picks() == one_screen


def test_a_shard_run_again_predicts_nothing_twice(campaign, monkeypatch):
    lower, upper = screen.pool_shards(NAME, 1, campaign.screening.shard_size)[1]
    assert screen.score_shard(NAME, 1, campaign, lower, upper, torch_threads=1) == 20
    version = latest_version(NAME, "structural")
    assert Candidate.objects(campaign=NAME, scored_by_model=version).count() == 20
    monkeypatch.setattr(screen, "_predict", lambda *args: pytest.fail("predicted twice"))
    assert screen.score_shard(NAME, 1, campaign, lower, upper, torch_threads=1) == 20


def test_the_screen_job_fans_out_over_shards(campaign):
    response = jobs.screen_job.original(NAME, 1, GenerateOutput(counts={"substitution": 60}))
    names = [job.name for job in response.addition.jobs]
    assert names == ["score_job"] * 3 + ["select_job"]
    assert response.output.shards == 3
    assert Candidate.objects(campaign=NAME, status="selected").count() == 0  # not yet
