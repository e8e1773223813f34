"""A campaign through SLURM with `fireworks-config` defaults against `campaign run`, in one run.

On the local one-node SLURM cluster (``slurm/local-cluster``, needs root) the same campaign
file runs twice, each with its own HULLHUNTER_HOME and embedded MongoDB:

1. ``hullhunter campaign run FILE`` in this process's machine, timed;
2. ``hullhunter fireworks-config`` with its defaults (pilot jobs on the cluster's default
   partition), ``hullhunter campaign submit FILE`` and ``qlaunch rapidfire`` keeping up to two
   jobs queued, timed until the campaign completes. While a relaxation job runs, its SLURM job
   is cancelled once (``scancel``) and ``hullhunter campaign rerun-lost`` is run at once, as
   the README's recovery procedure says.

Printed: both wall times and their ratio, the SLURM jobs used, whether the round tables
(candidates made, picked, relaxed, hits per round) are identical, and for the cancelled job
the seconds until the recovery command found it and how many finished candidates were
computed again (must be 0). Usage::

    python benchmarks/cluster.py                                  # the quickstart (~15 min)
    python benchmarks/cluster.py --rounds 1                       # a shorter campaign
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from pymongo import MongoClient

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaign", type=Path, default=ROOT / "examples" / "quickstart.yaml")
    parser.add_argument("--rounds", type=int, default=None, help="override budget.rounds")
    return parser.parse_args()


def slurm_env() -> dict[str, str]:
    started = subprocess.run([ROOT / "slurm" / "local-cluster", "start"], capture_output=True)
    if started.returncode != 0:
        sys.exit(f"local SLURM cluster did not start: {started.stderr.decode()[-500:]}")
    line = subprocess.run(
        [ROOT / "slurm" / "local-cluster", "env"], capture_output=True, text=True, check=True
    ).stdout
    return {"SLURM_CONF": line.strip().removeprefix("export SLURM_CONF=")}


def home_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HULLHUNTER_")}
    return env | {"HULLHUNTER_HOME": str(home), "HULLHUNTER_TORCH_THREADS": "1"} | (extra or {})


def hullhunter(env: dict[str, str], *args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "hullhunter", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
    )
    if done.returncode != 0:
        sys.exit(f"hullhunter {' '.join(args)} failed: {done.stderr[-1000:]}")
    return done.stdout


def database(env: dict[str, str]) -> Any:
    code = (
        "from hullhunter.db import server_uri; from hullhunter.settings import get_settings; "
        "print(server_uri()); print(get_settings().db_name)"
    )
    uri, name = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout.split()
    return MongoClient(uri)[name]


def round_table(db: Any, name: str) -> list[tuple]:
    rows = []
    for doc in db.rounds.find({"campaign": name}).sort("number", 1):
        counts, metrics = doc.get("counts", {}), doc.get("metrics", {})
        made = sum(n for k, n in counts.get("generated", {}).items() if k != "duplicates")
        rows.append(
            (
                doc["number"],
                made,
                counts.get("selected"),
                metrics.get("accepted"),
                metrics.get("hits"),
            )
        )
    return rows


def squeue(env: dict[str, str]) -> list[tuple[str, Path]]:
    listed = subprocess.run(
        ["squeue", "-h", "-t", "R", "-o", "%i %Z"], capture_output=True, text=True, env=env
    ).stdout
    return [
        (job, Path(folder)) for job, folder in (line.split(" ", 1) for line in listed.splitlines())
    ]


def main() -> None:
    args = parse_args()
    config = yaml.safe_load(args.campaign.read_text())
    if args.rounds is not None:
        config.setdefault("budget", {})["rounds"] = args.rounds
    name = config["name"]
    work = Path(tempfile.mkdtemp(prefix="hullhunter-cluster-"))
    campaign_file = work / "campaign.yaml"
    campaign_file.write_text(yaml.safe_dump(config))

    local_env = home_env(work / "local")
    began = time.perf_counter()
    hullhunter(local_env, "campaign", "run", str(campaign_file), cwd=work)
    local_s = time.perf_counter() - began
    local_rows = round_table(database(local_env), name)
    hullhunter(local_env, "db", "stop")

    env = home_env(work / "slurm", slurm_env())
    hullhunter(env, "fireworks-config")
    fw_dir = work / "slurm" / "fw_config"
    env["FW_CONFIG_FILE"] = str(fw_dir / "FW_config.yaml")
    db = database(env)
    launches = work / "launches"
    launches.mkdir()
    began = time.perf_counter()
    hullhunter(env, "campaign", "submit", str(campaign_file))
    keep_two_queued = ["rapidfire", "-m", "2", "--nlaunches", "infinite", "--sleep", "5"]
    qlaunch = subprocess.Popen(
        [BIN / "qlaunch", "-c", fw_dir, *keep_two_queued],
        cwd=launches, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    found_s, recomputed, before = None, None, {}
    try:
        while (db.campaigns.find_one({"name": name}) or {}).get("status") != "completed":
            if found_s is None:
                relaxing = db.fireworks.find_one(
                    {"state": "RUNNING", "name": {"$regex": "relax_job"}}
                )
                launch = relaxing and db.launches.find_one(
                    {"fw_id": relaxing["fw_id"], "state": "RUNNING"}
                )
                done = {
                    c["candidate_id"]: c["created_at"]
                    for c in db.calculations.find({"round": {"$gte": 1}})
                }
                jobs = [
                    job
                    for job, folder in squeue(env)
                    if launch and Path(launch["launch_dir"]).is_relative_to(folder)
                ]
                if jobs and done:
                    subprocess.run(["scancel", jobs[0]], env=env, check=True)
                    cancelled = time.perf_counter()
                    while any(job == jobs[0] for job, _ in squeue(env)):
                        time.sleep(0.5)
                    while "1 lost job(s)" not in hullhunter(env, "campaign", "rerun-lost", name):
                        time.sleep(1)
                    found_s = time.perf_counter() - cancelled
                    before = done
            time.sleep(2)
        slurm_s = time.perf_counter() - began
    finally:
        qlaunch.terminate()
        subprocess.run(["scancel", "-n", "hullhunter"], env=env)
    if found_s is not None:
        after = {
            c["candidate_id"]: c["created_at"] for c in db.calculations.find({"round": {"$gte": 1}})
        }
        recomputed = sum(after[k] != v for k, v in before.items())
    jobs_used = len(list(launches.glob("block_*/launcher_*")))
    slurm_rows = round_table(db, name)
    hullhunter(env, "db", "stop")

    print(f"\ncampaign {name} ({len(local_rows) - 1} rounds after the seed round)")
    print(f"in-process `campaign run`:            {local_s:8.1f} s")
    print(f"SLURM, fireworks-config defaults:     {slurm_s:8.1f} s  ({slurm_s / local_s:.2f}x)")
    print(f"SLURM jobs used:                      {jobs_used}")
    print(f"round tables identical:               {local_rows == slurm_rows}")
    for label, rows in (("in-process", local_rows), ("SLURM", slurm_rows)):
        print(f"  {label:>10}: (round, made, picked, relaxed, hits) {rows}")
    if found_s is None:
        print("scancel: no relaxation job was caught running (campaign too short)")
    else:
        print(f"scancel of a running relaxation job:  found by rerun-lost {found_s:.1f} s after")
        print(f"finished candidates computed again:   {recomputed}")


if __name__ == "__main__":
    main()
