"""Orchestration overhead: FireWorks + jobflow on the embedded MongoDB, against run_locally.

Prints, in one run on this machine:
  * overhead per firework: submit N empty jobflow jobs as one FireWorks workflow and run them
    with rlaunch (in-process rapidfire), against jobflow's run_locally on the same flow;
  * campaign status time with 100,000 candidate documents (the indexes at work).

Usage: python benchmarks/orchestration.py [--fireworks 500] [--candidates 100000]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

from jobflow import Flow, job, run_locally
from jobflow.managers.fireworks import flow_to_workflow


@job
def empty_job(index: int) -> int:
    """Does nothing: what remains is the orchestration cost."""
    return index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fireworks", type=int, default=500)
    parser.add_argument("--candidates", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5, help="status timings to take")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="hh-bench-"))
    os.environ["HULLHUNTER_HOME"] = str(home)
    os.environ["HULLHUNTER_DB_NAME"] = "hh_bench_orchestration"

    import jobflow
    from fireworks import FWorker
    from fireworks.core.rocket_launcher import rapidfire
    from jobflow import JobStore
    from maggma.stores import MemoryStore

    from hullhunter.db import connect
    from hullhunter.fireworks_config import get_job_store, get_launchpad
    from hullhunter.server import LocalServer
    from hullhunter.settings import get_settings
    from hullhunter.workflows.campaign import status

    server = LocalServer(get_settings().local_db_dir)
    try:
        db = connect()
        launchpad = get_launchpad()
        launchpad.reset("", require_password=False)
        jobflow.SETTINGS.JOB_STORE = get_job_store()
        n = args.fireworks

        flow = Flow([empty_job(i) for i in range(n)])
        start = time.perf_counter()
        launchpad.add_wf(flow_to_workflow(flow))
        submit_per_job = (time.perf_counter() - start) / n
        os.chdir(home)
        rapidfire(launchpad, FWorker(), nlaunches=0, strm_lvl="ERROR")
        fireworks_per_job = (time.perf_counter() - start) / n
        completed = launchpad.fireworks.count_documents({"state": "COMPLETED"})
        logging.getLogger("jobflow").setLevel(logging.WARNING)

        local_flow = Flow([empty_job(i) for i in range(n)])
        start = time.perf_counter()
        run_locally(local_flow, store=JobStore(MemoryStore()), log=False)
        local_per_job = (time.perf_counter() - start) / n

        print(f"{n} empty jobs ({completed} COMPLETED through FireWorks)")
        print(f"{'':34}{'per job':>12}")
        print(f"{'FireWorks submit':34}{submit_per_job * 1e3:>10.1f} ms")
        print(f"{'FireWorks submit + rlaunch':34}{fireworks_per_job * 1e3:>10.1f} ms")
        print(f"{'jobflow run_locally (memory store)':34}{local_per_job * 1e3:>10.1f} ms")
        print(
            f"ratio FireWorks / run_locally: {fireworks_per_job / local_per_job:.1f}x"
            f"   (target: under 200 ms per firework)"
        )

        _fill_campaign(db, args.candidates)
        timings = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            summary = status("bench")
            timings.append(time.perf_counter() - start)
        total = sum(summary["candidates"].values())
        print(
            f"campaign status with {total:,} candidates: median "
            f"{statistics.median(timings) * 1e3:.0f} ms over {args.repeats} "
            "(target: under 1 s)"
        )
    finally:
        server.stop()


def _fill_campaign(db, n_candidates: int) -> None:
    from hullhunter.documents import Campaign, Round, ensure_indexes

    ensure_indexes()
    Campaign(name="bench", config={"name": "bench"}, status="running").save()
    for number in range(4):
        Round(campaign="bench", number=number, status="completed").save()
    states = ("generated", "selected", "relaxed", "rejected", "failed")
    batch = []
    for i in range(n_candidates):
        batch.append(
            {
                "candidate_id": f"bench-{i}",
                "campaign": "bench",
                "round": i % 4,
                "structure": {},
                "formula": f"Li{i % 7 + 1}O",
                "chemsys": "Li-O",
                "generator": "substitution",
                "status": states[i % len(states)],
            }
        )
        if len(batch) == 10_000:
            db.candidates.insert_many(batch)
            batch = []
    if batch:
        db.candidates.insert_many(batch)


if __name__ == "__main__":
    main()
