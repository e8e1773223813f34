"""jobflow jobs of a campaign round; each runs one stage of :mod:`hullhunter.workflows.round`.

A round is one Flow (one FireWorks workflow): generate -> screen, and the screen job adds
the rest dynamically (a jobflow ``Response``): one relaxation job per batch, then the hull
update, retraining and the decision whether to submit the next round. Each job consumes the
typed output of the one before (:mod:`hullhunter.workflows.schemas`). Jobs connect to
MongoDB from the worker's own settings (``HULLHUNTER_DB_URI``), so no credentials travel in
a firework, and read the campaign's configuration once.
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from datetime import UTC, datetime

import psutil
from jobflow import CURRENT_JOB, Flow, Job, Response, job
from jobflow.managers.fireworks import flow_to_workflow

from hullhunter.campaign_config import CampaignConfig
from hullhunter.db import connect
from hullhunter.documents import Calculation, Campaign, Material, Round
from hullhunter.fireworks_config import get_launchpad
from hullhunter.settings import get_settings
from hullhunter.workflows.oracles.registry import OracleContext
from hullhunter.workflows.round import generate, hull, relax, retrain, screen
from hullhunter.workflows.round.records import SEED_ROUND, load_campaign
from hullhunter.workflows.schemas import (
    AdvanceOutput,
    GenerateOutput,
    HullOutput,
    RelaxOutput,
    RetrainOutput,
    ScreenOutput,
)


def _route(new_job: Job, name: str, category: str) -> Job:
    """FireWorks routing: worker category plus a campaign tag that local workers filter on."""
    new_job.update_config({"manager_config": {"_category": category, "hullhunter_campaign": name}})
    return new_job


def _categories(config: CampaignConfig) -> tuple[str, str]:
    """The (cpu, gpu) worker categories; gpu work goes to cpu workers when none is set."""
    cpu = config.workers.cpu_category
    return cpu, config.workers.gpu_category or cpu


@job(output_schema=GenerateOutput)
def generate_job(name: str, round_number: int) -> GenerateOutput | Response:
    """Generate and store this round's candidates.

    With ``workers.generation_shards`` above 1 (after the seed round), the job is replaced by
    one job per formula shard (any cpu worker, several at once) and one that adds up their
    counts, which the screen then receives.
    """
    connect()
    Round.objects(campaign=name, number=round_number).update_one(
        upsert=True, set__status="generating", set__started_at=datetime.now(UTC)
    )
    Campaign.objects(name=name).update_one(set__current_round=round_number, set__status="running")
    _, config = load_campaign(name)
    count = config.workers.generation_shards
    if round_number == SEED_ROUND or count == 1:
        return GenerateOutput(counts=generate.generate(name, round_number, config))
    cpu, _ = _categories(config)
    parts = [
        _route(generate_shard_job(name, round_number, index, count), name, cpu)
        for index in range(count)
    ]
    total = _route(add_counts_job([part.output for part in parts]), name, cpu)
    # The adding job takes this job's place (its uuid, the next index), as jobflow does for
    # a single replacing job, so the screen's reference to this job's output reads the
    # round's counts. A Flow output would go through jobflow's store_inputs job, which
    # jobflow 0.4.0 checks against this job's output_schema and fails (it holds a reference).
    total.set_uuid(CURRENT_JOB.job.uuid)
    total.index = CURRENT_JOB.job.index + 1
    return Response(replace=Flow([*parts, total], name=f"{name} round {round_number} generate"))


@job(output_schema=GenerateOutput)
def generate_shard_job(name: str, round_number: int, index: int, count: int) -> GenerateOutput:
    """Generate and store one formula shard of this round's candidates; a rerun stores only
    what an interrupted run did not."""
    connect()
    _, config = load_campaign(name)
    shard = generate.Shard(index, count)
    return GenerateOutput(counts=generate.generate(name, round_number, config, shard))


@job(output_schema=GenerateOutput)
def add_counts_job(parts: list[GenerateOutput]) -> GenerateOutput:
    """The round's counts: the shards' counts added up."""
    total: Counter[str] = Counter()
    for part in parts:
        total.update(part.counts)
    return GenerateOutput(counts=dict(total))


@job(output_schema=ScreenOutput)
def screen_job(name: str, round_number: int, generated: GenerateOutput) -> Response:
    """Select candidates for the oracle, then add the relaxation batches and the round's end.

    A pool larger than ``screening.shard_size`` is scored first by one job per shard (any
    worker of the gpu category, several at once), then selected by :func:`select_job`.
    """
    connect()
    _, config = load_campaign(name)
    shards = screen.pool_shards(name, round_number, config.screening.shard_size)
    if len(shards) > 1:
        cpu, gpu = _categories(config)
        scored = [
            _route(score_job(name, round_number, lower, upper), name, gpu)
            for lower, upper in shards
        ]
        chosen = _route(
            select_job(name, round_number, generated, [j.output for j in scored]), name, cpu
        )
        return Response(
            output=ScreenOutput(selected=0, batches=0, shards=len(shards)),
            addition=Flow([*scored, chosen], name=f"{name} round {round_number} screen"),
        )
    selected = screen.screen(name, round_number, config, get_settings().torch_threads)
    return _relax_and_close(name, round_number, config, generated, selected)


@job
def score_job(name: str, round_number: int, lower: str | None, upper: str | None) -> int:
    """Score one shard of the pool (candidates with ``lower <= _id < upper``); a rerun
    scores only what the first run did not."""
    connect()
    _, config = load_campaign(name)
    return screen.score_shard(
        name, round_number, config, lower, upper, get_settings().torch_threads
    )


@job(output_schema=ScreenOutput)
def select_job(
    name: str, round_number: int, generated: GenerateOutput, shards: list[int]
) -> Response:
    """Select from the pool the shard jobs scored, then add the relaxations and the round's
    end: the same selection as an unsharded screen (nothing is predicted again)."""
    connect()
    _, config = load_campaign(name)
    selected = screen.screen(name, round_number, config, get_settings().torch_threads)
    return _relax_and_close(name, round_number, config, generated, selected)


def _relax_and_close(
    name: str,
    round_number: int,
    config: CampaignConfig,
    generated: GenerateOutput,
    selected: list[str],
) -> Response:
    """The rest of the round after selection: relaxation batches, hull, retrain, advance."""
    Round.objects(campaign=name, number=round_number).update_one(
        set__status="relaxing",
        set__counts__generated=generated.counts,
        set__counts__selected=len(selected),
    )
    cpu, gpu = _categories(config)
    relax_jobs = [
        _route(relax_job(name, round_number, batch), name, cpu)
        for batch in screen.batches(selected, config.oracle.batch_size)
    ]
    placed = _route(hull_job(name, round_number, [j.output for j in relax_jobs]), name, cpu)
    trained = _route(retrain_job(name, round_number, placed.output), name, gpu)
    advance = _route(advance_job(name, round_number, trained.output), name, cpu)
    return Response(
        output=ScreenOutput(selected=len(selected), batches=len(relax_jobs)),
        addition=Flow([*relax_jobs, placed, trained, advance], name=f"{name} round {round_number}"),
    )


@job(output_schema=RelaxOutput)
def relax_job(name: str, round_number: int, candidate_ids: list[str]) -> RelaxOutput:
    """Relax one batch; results are in MongoDB as each candidate finishes."""
    connect()
    _, config = load_campaign(name)
    context = OracleContext.for_round(get_settings(), name, round_number)
    counts = relax.relax(name, round_number, candidate_ids, config.oracle, context)
    return RelaxOutput(counts=counts)


@job(output_schema=HullOutput)
def hull_job(name: str, round_number: int, batches: list[RelaxOutput]) -> HullOutput:
    """Put the round's results on the hull and record the round's metrics and relaxations."""
    connect()
    relaxed = sum((Counter(batch.counts) for batch in batches), Counter())
    Round.objects(campaign=name, number=round_number).update_one(
        upsert=True, set__counts__relaxed=dict(relaxed)
    )
    placed, metrics = hull.update_hull(name, round_number)
    return HullOutput(
        **{key: metrics.get(key) for key in ("accepted", "hits", "hit_rate", "on_hull_total")},
        calculations=metrics.get("calculations", {}),
        elemental_energies={
            element: float(reference.energy_per_atom)
            for element, reference in placed.elemental_references.items()
        },
    )


@job(output_schema=RetrainOutput)
def retrain_job(name: str, round_number: int, placed: HullOutput) -> RetrainOutput:
    """Train the next model versions on every oracle result so far, on the round's hull."""
    connect()
    _, config = load_campaign(name)
    site = get_settings()
    network = retrain.model_config(config, site.device, site.torch_threads)
    versions = retrain.retrain(name, round_number, config, placed.elemental_energies, network)
    return RetrainOutput(versions=versions)


@job(output_schema=AdvanceOutput)
def advance_job(name: str, round_number: int, trained: RetrainOutput) -> AdvanceOutput:
    """Close the round; submit the next one unless the budget, target or a pause says stop."""
    connect()
    Round.objects(campaign=name, number=round_number).update_one(
        set__status="completed",
        set__finished_at=datetime.now(UTC),
        set__model_version=trained.versions["structural"],
    )
    campaign, config = load_campaign(name)
    reason = stop_reason(name, round_number, config)
    if reason is None and campaign.status == "running":
        submit_round(name, round_number + 1)
        return AdvanceOutput(next_round=round_number + 1)
    if reason is not None:
        Campaign.objects(name=name).update_one(
            set__status="completed", set__updated_at=datetime.now(UTC)
        )
    return AdvanceOutput(stopped=reason or campaign.status)


def stop_reason(name: str, round_number: int, config: CampaignConfig) -> str | None:
    """Why the campaign stops after ``round_number``, or None to go on."""
    if round_number >= config.budget.rounds:
        return f"all {config.budget.rounds} rounds done"
    calls = Calculation.objects(campaign=name).count()
    if calls >= config.budget.max_oracle_calls:
        return f"oracle budget spent ({calls} of {config.budget.max_oracle_calls} calls)"
    target = config.budget.target_new_stable
    if target is not None:
        found = Material.objects(campaign=name, is_seed=False, on_hull=True).count()
        if found >= target:
            return f"target reached ({found} new materials on the hull)"
    return None


def round_flow(name: str, round_number: int, config: CampaignConfig) -> Flow:
    """The Flow of one round (the rest is added by the screen job at run time)."""
    cpu, gpu = _categories(config)
    generated = _route(generate_job(name, round_number), name, cpu)
    screened = _route(screen_job(name, round_number, generated.output), name, gpu)
    return Flow([generated, screened], name=f"{name} round {round_number}")


SUBMIT_LEASE_S = 120  # a submitter on another host that has not added its workflow by then died


def submit_round(name: str, round_number: int) -> int | None:
    """Add one round's workflow to the LaunchPad, once; the root fw_id, or None if nothing
    was added.

    The round's marker (status ``submitted``, who submits, since when) is written first, so
    two processes never both add the round; a marker whose submitter died before its
    workflow existed is taken over (:func:`_finish_submission`), so a crash in between
    cannot strand the campaign.
    """
    previous = Round.objects(campaign=name, number=round_number).modify(
        upsert=True,
        new=False,
        set_on_insert__status="submitted",
        set_on_insert__submitter=_submitter(),
        set_on_insert__submitted_at=datetime.now(UTC),
    )
    if previous is not None:
        return _finish_submission(name, previous)
    return _add_round_workflow(name, round_number)


def repair_submissions(name: str) -> list[int]:
    """Submit what a crash left unsubmitted: the seed round of a campaign stored without one,
    and any round marked submitted whose workflow was never added. Returns those rounds."""
    rounds = list(Round.objects(campaign=name).order_by("number"))
    if not rounds:
        return [SEED_ROUND] if submit_round(name, SEED_ROUND) is not None else []
    return [
        marker.number
        for marker in rounds
        if marker.status == "submitted" and _finish_submission(name, marker) is not None
    ]


def _submitter() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _workflow_name(name: str, round_number: int) -> str:
    return f"{name} round {round_number}"  # campaign names have no spaces: unambiguous


def _add_round_workflow(name: str, round_number: int) -> int:
    _, config = load_campaign(name)
    workflow = flow_to_workflow(round_flow(name, round_number, config))
    root = min(get_launchpad().add_wf(workflow).values())
    _record_workflow(name, round_number, root)
    return root


def _record_workflow(name: str, round_number: int, root: int) -> None:
    Round.objects(campaign=name, number=round_number).update_one(set__workflow_id=root)
    Campaign.objects(name=name).update_one(
        add_to_set__workflow_ids=root, set__updated_at=datetime.now(UTC)
    )


def _finish_submission(name: str, marker: Round) -> int | None:
    """Add the workflow of a round whose submitter died before adding it; None when the
    workflow exists (recorded if it was not) or a live process is still adding it."""
    if marker.status != "submitted" or marker.workflow_id is not None:
        return None
    added = get_launchpad().workflows.find_one(
        {"name": _workflow_name(name, marker.number)}, {"nodes": 1}
    )
    if added is not None:  # the submitter died after add_wf, before recording it
        _record_workflow(name, marker.number, min(added["nodes"]))
        return None
    if not _submitter_gone(marker):
        return None
    claimed = Round.objects(
        campaign=name, number=marker.number, status="submitted", submitter=marker.submitter
    ).modify(set__submitter=_submitter(), set__submitted_at=datetime.now(UTC))
    if claimed is None:  # another process took the submission over first
        return None
    return _add_round_workflow(name, marker.number)


def _submitter_gone(marker: Round) -> bool:
    """True when the process that marked the round cannot be adding its workflow any more."""
    host, _, pid = (marker.submitter or "").rpartition(":")
    if not pid.isdigit():
        return True  # a marker from before submitters were recorded
    if host == socket.gethostname():
        return int(pid) == os.getpid() or not psutil.pid_exists(int(pid))
    since = marker.submitted_at
    if since is None:
        return True
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return (datetime.now(UTC) - since).total_seconds() > SUBMIT_LEASE_S
