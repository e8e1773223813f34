"""Fault injection: does a campaign survive killed workers and a killed or paused MongoDB?

A small campaign (CHGNet oracle, Ag-Au-Cu, one round after the seed round, batches of two)
runs on the embedded MongoDB with two local ``rlaunch`` workers (this machine has no SLURM:
the harness plays the scheduler and starts a replacement for each worker that dies), first
without faults, then with: SIGKILLs of a worker at random moments inside the oracle (a batch
under way) and inside FireWorks' bookkeeping (a launch just checked out), one SIGKILL of
mongod followed by ``hullhunter db start``, and one SIGSTOP of mongod for a few seconds.

A dead worker's job is put back as ``hullhunter campaign rerun-lost`` does once the job's
pings expire (FireWorks' ``detect_lostruns --rerun``, restricted to that worker's launches,
so the run does not wait the 5 minutes). When the workers have nothing left to do, the
documented recovery finishes the campaign: ``hullhunter db start``, ``hullhunter campaign
rerun-lost NAME``, ``lpad rerun_fws -s FIZZLED``, ``hullhunter campaign resume NAME``.
Workflow locks left by a kill expire after 30 s here (``WFLOCK_EXPIRATION_SECS``; 300 s in
the generated FW_config.yaml), so a kill inside a lock costs 30 s.

Prints faults injected and survived, candidates relaxed exactly once, twice (must be 0) and
lost (must be 0), and the wall time beside the same campaign without faults.

Usage: python benchmarks/faults.py [--worker-kills 4] [--seed 0]  (about 5 min on 2 cores)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import yaml

CAMPAIGN = {
    "chemical_space": {"systems": ["Ag-Au-Cu"]},
    "seeds": {"max_seeds": 6, "elemental_polymorphs": 1},
    "generators": {
        "substitution": {"limit": 30},
        "saps": {"limit": 30, "max_per_parent": 4},
        "prototypes": {"limit": 20},
    },
    "screening": {"top_k": 6, "exploration_fraction": 0.5, "tta": False},
    "model": {"n_models": 2, "epochs": 30},
    "oracle": {"fmax": 0.2, "max_steps": 60, "batch_size": 2},
    "budget": {"rounds": 1},
}
STALL_S = 120  # no firework changed state for this long: recover, as an operator would


class Harness:
    """Two worker slots, the faults to inject, and the recovery commands."""

    def __init__(self, home: Path, env: dict[str, str], seed: int) -> None:
        self.home, self.env, self.random = home, env, random.Random(seed)
        self.workers: dict[int, tuple[subprocess.Popen, Path]] = {}
        self.started = 0

    def command(self, *args: str) -> str:
        done = subprocess.run(args, capture_output=True, text=True, env=self.env)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {done.stderr.strip()[-500:]}")
        return done.stdout

    def hullhunter(self, *args: str) -> str:
        return self.command(sys.executable, "-m", "hullhunter", *args)

    def start_worker(self, slot: int) -> None:
        self.started += 1
        folder = self.home / "workers" / f"w{self.started}"
        folder.mkdir(parents=True)
        process = subprocess.Popen(
            ["rlaunch", "rapidfire", "--nlaunches", "0", "--sleep", "1"],
            cwd=folder, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.workers[slot] = (process, folder)

    def rerun_dead_worker(self, folder: Path) -> None:
        """What `campaign rerun-lost` does once the pings of the dead worker's job expire."""
        from hullhunter.fireworks_config import get_launchpad

        get_launchpad().detect_lostruns(
            expiration_secs=0,
            rerun=True,
            launch_query={"launch_dir": {"$regex": f"^{re.escape(str(folder))}/"}},
        )

    def recover(self, name: str) -> None:
        """The documented recovery, once no worker is left."""
        self.hullhunter("db", "start")
        self.hullhunter("campaign", "rerun-lost", name, "--expiration", "1")
        password = date.today().strftime("%Y-%m-%d")
        self.command("lpad", "rerun_fws", "-s", "FIZZLED", "--password", password)
        self.hullhunter("campaign", "resume", name)

    def stop_workers(self) -> None:
        for process, _ in self.workers.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        self.workers.clear()


def mongod_pid(home: Path) -> int:
    from hullhunter.server import LocalServer

    info = LocalServer(home / "mongodb").running()
    if info is None:
        raise RuntimeError("mongod is not running")
    return info.pid


def victim(harness: Harness, kind: str, seen_launches: int) -> int | None:
    """The slot to kill for ``kind`` now, or None if the moment has not come."""
    from hullhunter.fireworks_config import get_launchpad

    launchpad = get_launchpad()
    if kind == "oracle":
        running = launchpad.fireworks.distinct("fw_id", {"state": "RUNNING", "name": "relax_job"})
        launches = list(launchpad.launches.find({"fw_id": {"$in": running}, "state": "RUNNING"}))
        if not launches or harness.random.random() < 0.9:  # a random moment within the batch
            return None
    else:  # bookkeeping: a launch just checked out, the rocket still setting up
        if launchpad.launches.count_documents({}) <= seen_launches:
            return None
        launches = list(launchpad.launches.find().sort("launch_id", -1).limit(1))
    for slot, (_, folder) in harness.workers.items():
        if any(launch["launch_dir"].startswith(f"{folder}/") for launch in launches):
            return slot
    return None


def run_arm(harness: Harness, name: str, faults: list[str]) -> dict:
    """Run one campaign to completion, injecting ``faults`` in order; return its figures."""
    from pymongo.errors import PyMongoError

    from hullhunter.documents import Campaign
    from hullhunter.fireworks_config import get_launchpad

    path = harness.home / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, **CAMPAIGN}))
    harness.hullhunter("campaign", "submit", str(path))
    start = time.monotonic()
    pending, injected, recoveries = list(faults), [], 0
    seen_launches, last_states, last_change = 0, None, time.monotonic()
    for slot in (0, 1):
        harness.start_worker(slot)
    while True:
        try:
            if Campaign.objects.get(name=name).status == "completed":
                break
            states = sorted(
                (d["fw_id"], d["state"])
                for d in get_launchpad().fireworks.find({}, {"fw_id": 1, "state": 1})
            )
            kind = pending[0] if pending else None
            slot = (
                victim(harness, kind, seen_launches) if kind in ("oracle", "bookkeeping") else None
            )
            seen_launches = get_launchpad().launches.count_documents({})
        except PyMongoError:
            time.sleep(0.5)  # mongod down or paused: the workers' problem, not the harness'
            continue
        if states != last_states:
            last_states, last_change = states, time.monotonic()
        if slot is not None:
            harness.workers[slot][0].kill()
            injected.append(pending.pop(0))
        elif kind == "mongod-kill" and time.monotonic() - start > 20:
            pid = mongod_pid(harness.home)
            os.kill(pid, signal.SIGKILL)
            time.sleep(3)
            harness.hullhunter("db", "start")
            injected.append(pending.pop(0))
        elif kind == "mongod-pause" and time.monotonic() - start > 20:
            pid = mongod_pid(harness.home)
            os.kill(pid, signal.SIGSTOP)
            time.sleep(5)
            os.kill(pid, signal.SIGCONT)
            injected.append(pending.pop(0))
        for slot, (process, folder) in list(harness.workers.items()):
            if process.poll() is not None:
                del harness.workers[slot]
                with contextlib.suppress(PyMongoError):  # mongod down: recovery puts it back
                    harness.rerun_dead_worker(folder)
        stalled = time.monotonic() - last_change > STALL_S
        if not harness.workers or stalled:
            harness.stop_workers()
            harness.recover(name)
            recoveries += 1
            last_change = time.monotonic()
        for slot in (0, 1):
            if slot not in harness.workers:
                harness.start_worker(slot)
        time.sleep(0.05)
    wall = time.monotonic() - start
    harness.stop_workers()
    return {"wall_s": wall, "injected": injected, "recoveries": recoveries, **outcome(name)}


def outcome(name: str) -> dict:
    """Candidates the oracle was given: relaxed once, twice (two stored trajectories), lost."""
    from hullhunter.documents import Calculation, Candidate
    from hullhunter.fireworks_config import get_launchpad

    chosen = Candidate.objects(
        campaign=name, status__in=["selected", "relaxing", "relaxed", "failed"]
    )
    calculated = set(Calculation.objects(campaign=name).distinct("candidate_id"))
    files = get_launchpad().db["trajectories.files"]  # one per stored relaxation
    runs = {
        item["_id"]: item["n"]
        for item in files.aggregate(
            [
                {"$match": {"filename": {"$regex": f"^{re.escape(name)}-"}}},
                {"$group": {"_id": "$filename", "n": {"$sum": 1}}},
            ]
        )
    }
    once = twice = lost = 0
    for candidate in chosen:
        n = runs.get(f"{name}-{candidate.candidate_id}-chgnet", 0)
        if candidate.candidate_id not in calculated:
            lost += 1
        elif n >= 2:
            twice += 1
        else:
            once += 1
    launchpad = get_launchpad()
    fw_ids = launchpad.fireworks.distinct("fw_id", {"spec.hullhunter_campaign": name})
    launches = launchpad.launches.count_documents({"fw_id": {"$in": fw_ids}})
    return {
        "chosen": chosen.count(),
        "once": once,
        "twice": twice,
        "lost": lost,
        "jobs": len(fw_ids),
        "launches": launches,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker-kills", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="hh-faults-"))
    for variable in ("HULLHUNTER_DB_URI", "HULLHUNTER_CONFIG", "HULLHUNTER_DB_NAME"):
        os.environ.pop(variable, None)
    os.environ.update(HULLHUNTER_HOME=str(home), HULLHUNTER_TORCH_THREADS="1")
    fw = home / "fw"
    env = {
        **os.environ,
        "FW_CONFIG_FILE": str(fw / "FW_config.yaml"),
        "JOBFLOW_CONFIG_FILE": str(fw / "jobflow.yaml"),
    }
    harness = Harness(home, env, args.seed)
    harness.hullhunter("db", "start")
    harness.hullhunter("fireworks-config", "--dir", str(fw))
    fw_config = yaml.safe_load((fw / "FW_config.yaml").read_text())
    fw_config["WFLOCK_EXPIRATION_SECS"] = 30
    (fw / "FW_config.yaml").write_text(yaml.safe_dump(fw_config))

    from hullhunter.db import connect

    connect()
    kills = [harness.random.choice(["oracle", "bookkeeping"]) for _ in range(args.worker_kills)]
    faults = [*kills[:2], "mongod-pause", *kills[2:3], "mongod-kill", *kills[3:]]
    try:
        calm = run_arm(harness, "calm", [])
        faulty = run_arm(harness, "faulty", faults)
    finally:
        harness.stop_workers()
        harness.hullhunter("db", "stop")
    survived = len(faulty["injected"]) if faulty["twice"] == faulty["lost"] == 0 else 0
    print(f"faults injected: {len(faulty['injected'])} ({', '.join(faulty['injected'])})")
    print(
        f"faults survived: {survived} (campaign completed; recoveries run: {faulty['recoveries']})"
    )
    print(f"{'':34}{'no faults':>12}{'faults':>12}")
    for key, label in [
        ("jobs", "jobs (fireworks)"),
        ("launches", "launches (reruns included)"),
        ("chosen", "candidates given to the oracle"),
        ("once", "relaxed exactly once"),
        ("twice", "relaxed twice (must be 0)"),
        ("lost", "lost (must be 0)"),
    ]:
        print(f"{label:34}{calm[key]:>12}{faulty[key]:>12}")
    print(f"{'wall time':34}{calm['wall_s']:>11.0f}s{faulty['wall_s']:>11.0f}s")


if __name__ == "__main__":
    main()
