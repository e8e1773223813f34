"""Campaigns on FireWorks: submit, run locally, inspect, pause, resume, cancel.

Each round is one FireWorks workflow converted from its jobflow Flow, so workflows stay
small; the last job of a round submits the next. Any worker (``rlaunch``, ``qlaunch`` on
SLURM, or :func:`run_local`) on the same MongoDB can run them.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections import Counter
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fireworks.core.rocket
import jobflow
import psutil
from fireworks import FWorker, LaunchPad
from fireworks.core.rocket_launcher import launch_rocket

from hullhunter.campaign_config import CampaignConfig
from hullhunter.db import connect
from hullhunter.documents import Campaign, Candidate, Round, ensure_indexes
from hullhunter.fireworks_config import (
    LOST_AFTER_S,
    PING_TIME_S,
    dead_slurm_launches,
    get_job_store,
    get_launchpad,
)
from hullhunter.settings import get_settings
from hullhunter.workflows.jobs import repair_submissions, stop_reason, submit_round
from hullhunter.workflows.round.records import SEED_ROUND
from hullhunter.workflows.round.retrain import campaign_prior, model_config

WORKER_LOG = "worker.log"
LOCAL_WORKER = "hullhunter-local"


def submit_campaign(config: CampaignConfig) -> tuple[bool, str]:
    """Store the campaign and submit its seed round; (False, why) if it was already there."""
    campaign_prior(config, model_config(config))  # refuse a mismatched prior before any work
    connect()
    ensure_indexes()
    document = config.model_dump(mode="json")
    existing = Campaign.objects(name=config.name).first()
    if existing is not None:
        if existing.config != document:
            raise ValueError(
                f"campaign '{config.name}' exists with a different configuration: "
                "give the new one another name, or cancel the old one first"
            )
        if existing.status != "cancelled":
            repaired = repair_submissions(config.name)
            if repaired:
                return True, (
                    f"campaign '{config.name}': round(s) {repaired} submitted again "
                    "(their submission had been interrupted)"
                )
        return False, f"campaign '{config.name}' was already submitted: nothing added"
    Campaign(name=config.name, config=document, status="running").save()
    submit_round(config.name, SEED_ROUND)
    return True, f"campaign '{config.name}' submitted (seed round)"


def _campaign(name: str) -> Campaign:
    connect()
    campaign = Campaign.objects(name=name).first()
    if campaign is None:
        known = ", ".join(Campaign.objects.distinct("name")) or "none yet"
        raise ValueError(f"no campaign named '{name}' (known: {known})")
    return campaign


def firework_states(name: str, launchpad: LaunchPad | None = None) -> Counter[str]:
    """Firework states of the campaign's jobs, from the LaunchPad."""
    launchpad = launchpad or get_launchpad()
    states = launchpad.fireworks.find({"spec.hullhunter_campaign": name}, {"state": 1})
    return Counter(doc["state"] for doc in states)


def pause(name: str) -> int:
    """Pause the campaign's unfinished workflows; returns how many were paused."""
    campaign = _campaign(name)
    launchpad = get_launchpad()
    count = 0
    for fw_id in campaign.workflow_ids:
        if launchpad.get_wf_summary_dict(fw_id)["state"] not in ("COMPLETED", "DEFUSED"):
            launchpad.pause_wf(fw_id)
            count += 1
    campaign.update(set__status="paused", set__updated_at=datetime.now(UTC))
    return count


def resume(name: str) -> tuple[int, list[int]]:
    """Resume paused jobs; submit the next round if the campaign stopped between rounds,
    and any round whose submission a crash interrupted.

    Returns how many jobs were resumed (FireWorks has no resume for whole workflows) and
    the rounds submitted.
    """
    campaign = _campaign(name)
    launchpad = get_launchpad()
    paused = launchpad.fireworks.distinct(
        "fw_id", {"spec.hullhunter_campaign": name, "state": "PAUSED"}
    )
    for fw_id in paused:
        launchpad.resume_fw(fw_id)
    campaign.update(set__status="running", set__updated_at=datetime.now(UTC))
    submitted = repair_submissions(name)
    last = Round.objects(campaign=name).order_by("-number").first()
    if last is not None and last.status == "completed":
        config = CampaignConfig.model_validate(campaign.config)
        going_on = stop_reason(name, last.number, config) is None
        if going_on and submit_round(name, last.number + 1) is not None:
            submitted.append(last.number + 1)
    return len(paused), submitted


def cancel(name: str) -> int:
    """Defuse every unfinished firework of the campaign; nothing done is deleted."""
    campaign = _campaign(name)
    launchpad = get_launchpad()
    for fw_id in campaign.workflow_ids:
        launchpad.defuse_wf(fw_id)
    campaign.update(set__status="cancelled", set__updated_at=datetime.now(UTC))
    return len(campaign.workflow_ids)


def lost_jobs(name: str, expiration_s: int = LOST_AFTER_S, rerun: bool = False) -> list[int]:
    """RUNNING fireworks of the campaign whose worker is gone: its SLURM job is no longer
    running (``squeue``, at once), it was a ``campaign run`` on this host whose process has
    died, or it stopped pinging (any worker, after ``expiration_s``). With ``rerun`` they go
    back to READY; the batch they ran skips what finished."""
    launchpad = get_launchpad()
    query = {"spec.hullhunter_campaign": name}
    _, lost, _ = launchpad.detect_lostruns(expiration_secs=expiration_s, rerun=rerun, query=query)
    dead = _dead_local_launches(launchpad) + (dead_slurm_launches(launchpad) or [])
    if dead:  # FireWorks' own rerun path, for launches known dead before their pings expire
        _, more, _ = launchpad.detect_lostruns(
            expiration_secs=0, rerun=rerun, query=query, launch_query={"launch_id": {"$in": dead}}
        )
        lost = [*lost, *more]
    return sorted(set(lost))


def _dead_local_launches(launchpad: LaunchPad) -> list[int]:
    """RUNNING launches of :func:`run_local` workers of this host whose process is gone."""
    running = launchpad.launches.find(
        {
            "state": "RUNNING",
            "fworker.name": LOCAL_WORKER,
            "fworker.env.host": socket.gethostname(),
        },
        {"launch_id": 1, "fworker.env.pid": 1},
    )
    return [
        launch["launch_id"]
        for launch in running
        if not psutil.pid_exists(launch["fworker"]["env"].get("pid", 0))
    ]


def status(name: str) -> dict[str, Any]:
    """Where the campaign stands: rounds with counts and metrics, jobs, candidates."""
    campaign = _campaign(name)
    rounds = [
        {
            "round": r.number,
            "status": r.status,
            "generated": sum(
                n
                for source, n in (r.counts or {}).get("generated", {}).items()
                if source != "duplicates"
            ),
            "selected": (r.counts or {}).get("selected"),
            "relaxed": (r.metrics or {}).get("accepted"),
            "hits": (r.metrics or {}).get("hits"),
            "hit_rate": (r.metrics or {}).get("hit_rate"),
            "selection": (r.metrics or {}).get("selection", {}),
            "model_mae": (r.metrics or {}).get("model_mae_ev_per_atom"),
            "on_hull_total": (r.metrics or {}).get("on_hull_total"),
        }
        for r in Round.objects(campaign=name).order_by("number")
    ]
    by_status = {
        item["_id"]: item["n"]
        for item in Candidate.objects(campaign=name).aggregate(
            [{"$group": {"_id": "$status", "n": {"$sum": 1}}}]
        )
    }
    return {
        "name": name,
        "status": campaign.status,
        "current_round": campaign.current_round,
        "rounds": rounds,
        "jobs": dict(firework_states(name)),
        "lost_jobs": lost_jobs(name),
        "candidates": by_status,
    }


def run_local(
    name: str,
    on_progress: Callable[[Counter[str]], None] | None = None,
    max_launches: int = 10_000,
) -> Counter[str]:
    """Run the campaign's jobs in this process until none is left (``rlaunch`` in-process).

    Jobs run one at a time, in the campaign's run folder, their output going to its
    ``worker.log``. Returns the final firework states;
    a FIZZLED job stops the loop so its error can be read (``lpad get_fws -s FIZZLED -d all``).
    """
    campaign = _campaign(name)
    config = CampaignConfig.model_validate(campaign.config)
    launchpad = get_launchpad()
    launchpad.m_logger.setLevel(logging.WARNING)
    jobflow.SETTINGS.JOB_STORE = get_job_store()
    categories = sorted({config.workers.cpu_category, config.workers.gpu_category or "cpu"})
    worker = FWorker(
        name=LOCAL_WORKER,
        category=categories,
        query={"spec.hullhunter_campaign": name},
        env={"host": socket.gethostname(), "pid": os.getpid()},  # a dead run is found at once
    )
    # rocket.py copied FireWorks' hourly default at import; rlaunch reads FW_config.yaml
    fireworks.core.rocket.PING_TIME_SECS = PING_TIME_S
    run_dir = get_settings().runs_dir / name
    run_dir.mkdir(parents=True, exist_ok=True)
    start_dir = Path.cwd()
    os.chdir(run_dir)
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:
        previous = signal.signal(signal.SIGTERM, _die_with_children)
    try:
        with (run_dir / WORKER_LOG).open("a") as log:
            for _ in range(max_launches):
                states = firework_states(name, launchpad)
                if on_progress:
                    on_progress(states)
                if states.get("FIZZLED") or not states.get("READY"):
                    break
                # jobs log and print a lot; the worker log keeps it out of the progress display
                with redirect_stdout(log), redirect_stderr(log):
                    launch_rocket(launchpad, worker, strm_lvl="WARNING")
    finally:
        os.chdir(start_dir)
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    return firework_states(name, launchpad)


def _die_with_children(signum: int, _frame: object) -> None:
    """SIGTERM of a local run: end the programs its jobs started, then die of the signal.

    A DFT code started by custodian would otherwise go on in the candidate's folder, where
    a rerun of the lost job starts another. The run still dies of SIGTERM, so its running
    job is found lost, as before. Under SLURM, scancel ends the whole job anyway.
    """
    end_session_children()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def end_session_children(timeout_s: float = 10.0) -> None:
    """Terminate (then kill, after ``timeout_s``) this process's descendants in its own
    session. The embedded MongoDB runs in a session of its own and is left running."""
    session = os.getsid(0)
    children = []
    for child in psutil.Process().children(recursive=True):
        try:
            if os.getsid(child.pid) == session:
                children.append(child)
        except ProcessLookupError:  # ended since it was listed
            continue
    for child in children:
        with suppress(psutil.NoSuchProcess):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=timeout_s)
    for child in alive:
        with suppress(psutil.NoSuchProcess):
            child.kill()
