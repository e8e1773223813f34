"""jobflow jobs of a campaign round; each composes one stage of :mod:`.stages`.

A round is one Flow (one FireWorks workflow): generate -> screen, and the screen job adds the
rest dynamically (a jobflow ``Response``): one relaxation job per batch, then hull update,
retraining and the decision whether to submit the next round. Jobs connect to MongoDB from
the worker's own settings (``HULLHUNTER_DB_URI``), so no credentials travel in a firework.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from jobflow import Flow, Job, Response, job

from hullhunter.db import connect
from hullhunter.documents import Calculation, Campaign, Round
from hullhunter.workflows import stages


def _route(new_job: Job, campaign: str, category: str) -> Job:
    """FireWorks routing: worker category plus a campaign tag that local workers filter on."""
    new_job.update_config(
        {"manager_config": {"_category": category, "hullhunter_campaign": campaign}}
    )
    return new_job


def _categories(name: str) -> tuple[str, str]:
    _, config = stages.load_campaign(name)
    return config.workers.cpu_category, config.workers.gpu_category or config.workers.cpu_category


@job
def generate_job(name: str, round_number: int) -> dict[str, int]:
    """Generate and store this round's candidates."""
    connect()
    Round.objects(campaign=name, number=round_number).update_one(
        upsert=True, set__status="generating", set__started_at=datetime.now(UTC)
    )
    Campaign.objects(name=name).update_one(set__current_round=round_number, set__status="running")
    counts = stages.generate(name, round_number)
    Round.objects(campaign=name, number=round_number).update_one(set__counts__generated=counts)
    return counts


@job
def screen_job(name: str, round_number: int, generated: dict[str, int]) -> Response:
    """Select candidates for the oracle, then add the relaxation batches and the round's end."""
    connect()
    selected = stages.screen(name, round_number)
    Round.objects(campaign=name, number=round_number).update_one(
        set__status="relaxing", set__counts__selected=len(selected)
    )
    _, config = stages.load_campaign(name)
    cpu, gpu = _categories(name)
    relax_jobs = [
        _route(relax_job(name, round_number, batch), name, cpu)
        for batch in stages.batches(selected, config.oracle.batch_size)
    ]
    hull = _route(update_hull_job(name, round_number, [j.output for j in relax_jobs]), name, cpu)
    trained = _route(retrain_job(name, round_number, hull.output), name, gpu)
    advance = _route(advance_job(name, round_number, trained.output), name, cpu)
    return Response(
        output={"selected": len(selected), "batches": len(relax_jobs)},
        addition=Flow([*relax_jobs, hull, trained, advance], name=f"{name} round {round_number}"),
    )


@job
def relax_job(name: str, round_number: int, candidate_ids: list[str]) -> dict[str, int]:
    """Relax one batch; results are in MongoDB as each candidate finishes."""
    connect()
    return stages.relax(name, round_number, candidate_ids)


@job
def update_hull_job(name: str, round_number: int, batches: list[dict]) -> dict[str, Any]:
    """Put the round's results on the hull and record the round's metrics."""
    connect()
    metrics = stages.update_hull(name, round_number)
    return {key: metrics.get(key) for key in ("accepted", "hits", "hit_rate", "on_hull_total")}


@job
def retrain_job(name: str, round_number: int, hull_summary: dict[str, Any]) -> dict[str, int]:
    """Train the next model versions on every oracle result so far."""
    connect()
    versions = stages.retrain(name, round_number)
    Round.objects(campaign=name, number=round_number).update_one(
        set__model_version=versions["structural"]
    )
    return versions


@job
def advance_job(name: str, round_number: int, versions: dict[str, int]) -> dict[str, Any]:
    """Close the round; submit the next one unless the budget, target or a pause says stop."""
    connect()
    Round.objects(campaign=name, number=round_number).update_one(
        set__status="completed", set__finished_at=datetime.now(UTC)
    )
    campaign, _ = stages.load_campaign(name)
    reason = stop_reason(name, round_number)
    if reason is None and campaign.status == "running":
        from hullhunter.workflows.campaign import submit_round

        submit_round(name, round_number + 1)
        return {"next_round": round_number + 1}
    if reason is not None:
        Campaign.objects(name=name).update_one(
            set__status="completed", set__updated_at=datetime.now(UTC)
        )
    return {"next_round": None, "stopped": reason or campaign.status}


def stop_reason(name: str, round_number: int) -> str | None:
    """Why the campaign stops after ``round_number``, or None to go on."""
    _, config = stages.load_campaign(name)
    if round_number >= config.budget.rounds:
        return f"all {config.budget.rounds} rounds done"
    calls = Calculation.objects(campaign=name).count()
    if calls >= config.budget.max_oracle_calls:
        return f"oracle budget spent ({calls} of {config.budget.max_oracle_calls} calls)"
    target = config.budget.target_new_stable
    if target is not None:
        from hullhunter.documents import Material

        found = Material.objects(campaign=name, is_seed=False, on_hull=True).count()
        if found >= target:
            return f"target reached ({found} new materials on the hull)"
    return None


def round_flow(name: str, round_number: int) -> Flow:
    """The Flow of one round (the rest is added by the screen job at run time)."""
    cpu, gpu = _categories(name)
    generated = _route(generate_job(name, round_number), name, cpu)
    screened = _route(screen_job(name, round_number, generated.output), name, gpu)
    return Flow([generated, screened], name=f"{name} round {round_number}")
