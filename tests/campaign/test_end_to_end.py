"""End to end: a tiny campaign through FireWorks workers on the real MongoDB.

The oracle is CHGNet and the chemical space small, so a round takes tens of seconds.
"""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from monty.serialization import loadfn
from pymatgen.entries.computed_entries import ComputedStructureEntry

from hullhunter.documents import Calculation, Campaign, Candidate, Material, ModelVersion, Round
from hullhunter.fireworks_config import get_launchpad, write_config

pytestmark = pytest.mark.slow

TINY = {
    "chemical_space": {"systems": ["Ag-Au-Cu"]},
    "seeds": {"max_seeds": 6, "elemental_polymorphs": 1},
    "generators": {
        "substitution": {"limit": 30},
        "saps": {"limit": 30, "max_per_parent": 4},
        "prototypes": {"limit": 20},
    },
    "screening": {"top_k": 4, "exploration_fraction": 0.5, "tta": False},
    "model": {"n_models": 2, "epochs": 30},
    "oracle": {"fmax": 0.2, "max_steps": 60, "batch_size": 3},
}


def tiny_campaign(tmp_path, name: str, rounds: int, **sections) -> str:
    path = tmp_path / f"{name}.yaml"
    data = {"name": name, **TINY, "budget": {"rounds": rounds}, **sections}
    path.write_text(yaml.safe_dump(data))
    return str(path)


def wait_mid_batch(name: str, process: subprocess.Popen, timeout_s: float = 300) -> set[str]:
    """Wait until a relaxation batch has finished some candidates, not all; return those it
    finished (empty when the process ended first)."""
    before = set(Calculation.objects(campaign=name).distinct("candidate_id"))
    deadline = time.monotonic() + timeout_s
    while process.poll() is None and time.monotonic() < deadline:
        if Candidate.objects(campaign=name, status="relaxing").count():
            finished = set(Calculation.objects(campaign=name).distinct("candidate_id")) - before
            if finished:
                return finished
        time.sleep(0.02)
    return set()


@pytest.fixture
def worker_env(hh_settings, database, tmp_path):
    """Environment of a FireWorks worker: generated config files plus hullhunter settings."""
    paths = write_config(hh_settings, folder=tmp_path / "fw")
    get_launchpad(hh_settings).reset("", require_password=False)
    env = {
        **os.environ,
        "FW_CONFIG_FILE": str(paths["fw_config"]),
        "JOBFLOW_CONFIG_FILE": str(paths["jobflow"]),
        "HULLHUNTER_TORCH_THREADS": "1",
    }
    return env


def hullhunter(*args: str, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "hullhunter", *args], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    return result


def rlaunch(env: dict, cwd, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["rlaunch", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=900
    )


def test_two_round_campaign_through_rlaunch(worker_env, tmp_path):
    # shards of 8: the round's pool is scored by several jobs, then selected by one
    campaign_file = tiny_campaign(
        tmp_path, "e2e", rounds=1, screening={**TINY["screening"], "shard_size": 8}
    )
    hullhunter("campaign", "submit", campaign_file, env=worker_env)
    again = hullhunter("campaign", "submit", campaign_file, env=worker_env)
    assert "already submitted" in again.stdout
    launched = rlaunch(worker_env, tmp_path, "rapidfire", "--nlaunches", "0")
    assert launched.returncode == 0, launched.stderr[-2000:]

    assert Campaign.objects.get(name="e2e").status == "completed"
    rounds = list(Round.objects(campaign="e2e").order_by("number"))
    assert [r.number for r in rounds] == [0, 1]
    assert all(r.status == "completed" for r in rounds)
    states = get_launchpad().fireworks.distinct("state", {"spec.hullhunter_campaign": "e2e"})
    assert states == ["COMPLETED"]

    seeds = Candidate.objects(campaign="e2e", round=0)
    assert {c.generator for c in seeds} == {"seed"}
    assert Calculation.objects(campaign="e2e", round=0).count() == seeds.count()
    selected = Candidate.objects(campaign="e2e", round=1, status__in=["relaxed", "failed"])
    assert 0 < selected.count() <= 4
    assert Calculation.objects(campaign="e2e", round=1).count() == selected.count()
    generated = Candidate.objects(campaign="e2e", round=1)
    scoring = get_launchpad().fireworks.count_documents(
        {"spec.hullhunter_campaign": "e2e", "name": {"$regex": "score_job"}}
    )
    assert scoring == -(-generated.count() // 8) >= 2
    rejected = Candidate.objects(campaign="e2e", round=1, status="rejected")
    assert generated.count() > 4  # more candidates than places, so the screen must choose
    assert rejected.count() == generated.count() - selected.count() > 0
    for candidate in selected:
        assert candidate.predicted_energy_per_atom is not None
        assert candidate.generator in {"substitution", "saps", "prototype"}

    materials = Material.objects(campaign="e2e")
    assert materials.filter(is_seed=True, on_hull=True).count() >= 3  # Au, Cu, a compound
    for material in materials.filter(on_hull=True):
        assert material.decomposition_energy <= 1e-6
    assert_analyst_fields(materials)
    assert_exports_and_readme_examples(worker_env, tmp_path, materials.count())
    metrics = rounds[1].metrics
    assert metrics["accepted"] + sum(metrics["skipped"].values()) == metrics["evaluated"]
    assert 0.0 <= metrics["hit_rate"] <= 1.0
    assert metrics["model_mae_ev_per_atom"] > 0
    assert ModelVersion.objects(campaign="e2e", kind="structural").count() == 2

    status = hullhunter("campaign", "status", "e2e", env={**worker_env, "COLUMNS": "80"}).stdout
    assert "completed" in status
    assert "…" not in status and max(len(line) for line in status.splitlines()) <= 80
    assert "screened / explore: hits / picks" in " ".join(status.split())  # the legend
    report_dir = tmp_path / "report"
    hullhunter("campaign", "report", "e2e", "--dir", str(report_dir), env=worker_env)
    summary = (report_dir / "summary.md").read_text()
    assert "| 1 |" in summary
    assert "- layered: " in summary and "- li_ion_conductor_candidates: " in summary
    beside_mp = summary.split("## The campaign's hull beside the Materials Project's")[1]
    assert "MP's MP2020-corrected energies" in beside_mp
    assert re.search(r"\n\| Au \| -?0 \| -?0 \| -?0 \|", beside_mp)
    assert (report_dir / "hit_rate.png").stat().st_size > 1000


def assert_analyst_fields(materials) -> None:
    """The fields the README defines: e_above_hull >= 0, is_stable exactly on the hull."""
    for material in materials:
        assert material.e_above_hull >= 0
        assert material.is_stable == (material.e_above_hull <= 1e-8)
        assert material.oracle == "chgnet"
        if material.nelements == 1 and material.is_stable:
            assert material.formation_energy_per_atom == pytest.approx(0, abs=1e-9)
    assert materials.filter(is_stable=True).count() >= 3


def readme_analyst_examples() -> list[str]:
    """The README's analyst examples (python blocks after an analyst-example marker)."""
    text = (Path(__file__).parents[2] / "README.md").read_text()
    blocks = re.findall(r"<!-- analyst-example -->\n```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 3
    return blocks


def assert_exports_and_readme_examples(env: dict, tmp_path, n_materials: int) -> None:
    rows = tmp_path / "materials.csv"
    hullhunter("campaign", "export", "e2e", str(rows), env=env)
    with rows.open() as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == n_materials and "e_above_hull" in table[0]
    entries_file = tmp_path / "entries.json"
    hullhunter("campaign", "export", "e2e", str(entries_file), "--format", "entries", env=env)
    entries = loadfn(entries_file)
    assert all(isinstance(e, ComputedStructureEntry) for e in entries)
    assert len(entries) == n_materials
    refused = subprocess.run(
        [sys.executable, "-m", "hullhunter", "campaign", "export", "e2e", "/proc/x.csv"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert refused.returncode != 0 and refused.stderr.count("\n") == 1, refused.stderr

    for example in readme_analyst_examples():
        code = example.replace('"quickstart"', '"e2e"').replace('"Li-Mn-O"', '"Ag-Au-Cu"')
        printed = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        ).stdout
        assert printed.strip(), f"the README example returned no rows:\n{example}"


def test_killed_worker_rerun_skips_finished_candidates(worker_env, tmp_path):
    campaign_file = tiny_campaign(tmp_path, "lost", rounds=1)
    hullhunter("campaign", "submit", campaign_file, env=worker_env)
    # run jobs one at a time until a relaxation batch has finished one candidate but not all,
    # then kill that worker inside the oracle (a kill inside FireWorks' own bookkeeping is
    # what the workflow lock expiry in FW_config.yaml is for, after minutes)
    worker = None
    for _ in range(10):
        worker = subprocess.Popen(
            ["rlaunch", "singleshot"], env=worker_env, cwd=tmp_path,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        in_batch = wait_mid_batch("lost", worker)
        if in_batch:
            break
        worker.wait()
    assert worker is not None and worker.poll() is None, "no relaxation batch caught mid-way"
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    finished_before = {c.candidate_id: c.created_at for c in Calculation.objects(campaign="lost")}
    assert Candidate.objects(campaign="lost", status="relaxing").count()  # killed mid-batch
    assert in_batch <= set(finished_before)  # after some of its candidates had finished

    time.sleep(2)
    status = hullhunter("campaign", "status", "lost", env=worker_env).stdout
    assert "hullhunter campaign rerun-lost lost" not in status  # it pinged 2 s ago: not lost
    rerun = hullhunter("campaign", "rerun-lost", "lost", "--expiration", "1", env=worker_env)
    assert "1 lost job(s) of lost set to rerun" in rerun.stdout
    launched = rlaunch(worker_env, tmp_path, "rapidfire", "--nlaunches", "0")
    assert launched.returncode == 0, launched.stderr[-2000:]

    assert Campaign.objects.get(name="lost").status == "completed"
    for candidate_id, created_at in finished_before.items():
        assert Calculation.objects.get(campaign="lost", candidate_id=candidate_id).created_at == (
            created_at
        )
    relaxed = Candidate.objects(campaign="lost", status__in=["relaxed", "failed"]).count()
    assert Calculation.objects(campaign="lost").count() == relaxed


def test_killed_local_run_is_detected_and_resumed(worker_env, tmp_path):
    campaign_file = tiny_campaign(tmp_path, "local", rounds=1)
    command = [sys.executable, "-m", "hullhunter", "campaign", "run", campaign_file]
    report = ["--report", str(tmp_path / "report")]
    run = subprocess.Popen(
        [*command, *report], env=worker_env, cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    in_batch = wait_mid_batch("local", run)
    assert in_batch, "the run ended before a batch was caught mid-way"
    run.send_signal(signal.SIGTERM)
    run.wait()
    finished_before = {c.candidate_id: c.created_at for c in Calculation.objects(campaign="local")}
    assert in_batch <= set(finished_before)

    again = subprocess.run(command, capture_output=True, text=True, env=worker_env, cwd=tmp_path)
    assert again.returncode == 1
    assert again.stderr.count("\n") == 1
    assert "RUNNING in a worker that died" in again.stderr and "--rerun-lost" in again.stderr
    assert not (tmp_path / "reports").exists()
    status = hullhunter("campaign", "status", "local", env=worker_env).stdout
    assert "whose worker died" in status and "campaign rerun-lost local" in status

    hullhunter(*command[3:], *report, "--rerun-lost", env=worker_env)
    assert Campaign.objects.get(name="local").status == "completed"
    assert (tmp_path / "report" / "summary.md").is_file()
    for candidate_id, created_at in finished_before.items():
        assert Calculation.objects.get(campaign="local", candidate_id=candidate_id).created_at == (
            created_at
        )
    relaxed = Candidate.objects(campaign="local", status__in=["relaxed", "failed"]).count()
    assert Calculation.objects(campaign="local").count() == relaxed


def test_two_workers_never_relax_the_same_candidate(worker_env, tmp_path):
    oracle = {**TINY["oracle"], "batch_size": 1}  # many small batches for two workers to share
    campaign_file = tiny_campaign(tmp_path, "pair", rounds=1, oracle=oracle)
    folders = [tmp_path / "worker-a", tmp_path / "worker-b"]
    workers = []
    for folder in folders:
        folder.mkdir()
        # "until no job can come" would let a worker quit while the other runs the screen
        # job (its relaxations do not exist yet), so both poll until the campaign is done
        with (folder / "rlaunch.log").open("w") as log:
            workers.append(
                subprocess.Popen(
                    ["rlaunch", "rapidfire", "--nlaunches", "infinite", "--sleep", "1"],
                    env=worker_env,
                    cwd=folder,
                    stdout=log,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
    # both workers polling before there is work: on a loaded machine a worker still starting
    # up could otherwise find every job taken
    deadline = time.monotonic() + 300
    while not all("Sleeping for" in (f / "rlaunch.log").read_text() for f in folders):
        assert time.monotonic() < deadline, "the workers did not start polling in 5 minutes"
        assert all(worker.poll() is None for worker in workers), "a worker died"
        time.sleep(0.5)
    hullhunter("campaign", "submit", campaign_file, env=worker_env)
    deadline = time.monotonic() + 900
    while Campaign.objects.get(name="pair").status != "completed":
        assert time.monotonic() < deadline, "the campaign did not finish in 15 minutes"
        assert all(worker.poll() is None for worker in workers), "a worker died"
        time.sleep(2)
    for worker in workers:
        worker.terminate()
        worker.communicate(timeout=60)

    launchpad = get_launchpad()
    launches = list(launchpad.launches.find({}, {"fw_id": 1, "launch_dir": 1}))
    fw_ids = [launch["fw_id"] for launch in launches]
    assert len(fw_ids) == len(set(fw_ids))  # no job ran twice
    used = {
        folder for folder in folders for launch in launches if str(folder) in launch["launch_dir"]
    }
    assert used == set(folders)  # both workers took jobs
    relaxed = Candidate.objects(campaign="pair", status__in=["relaxed", "failed"]).count()
    assert Calculation.objects(campaign="pair").count() == relaxed > 4
    # every relaxation stores its trajectory once: two for one candidate would be a double run
    files = launchpad.db["trajectories.files"].count_documents({"filename": {"$regex": "^pair-"}})
    assert files == Calculation.objects(campaign="pair", n_frames__gt=0).count() > 0


def test_pause_resume_cancel_act_on_the_launchpad(worker_env, tmp_path):
    campaign_file = tiny_campaign(tmp_path, "ctl", rounds=1)
    hullhunter("campaign", "submit", campaign_file, env=worker_env)
    launchpad = get_launchpad()

    def states() -> set[str]:
        return set(launchpad.fireworks.distinct("state", {"spec.hullhunter_campaign": "ctl"}))

    assert states() == {"READY", "WAITING"}
    assert "paused 1 workflow" in hullhunter("campaign", "pause", "ctl", env=worker_env).stdout
    assert states() == {"PAUSED"}
    assert Campaign.objects.get(name="ctl").status == "paused"
    # a paused campaign gives rlaunch nothing to do
    rlaunch(worker_env, tmp_path, "singleshot")
    assert Calculation.objects(campaign="ctl").count() == 0
    assert Candidate.objects(campaign="ctl").count() == 0
    hullhunter("campaign", "resume", "ctl", env=worker_env)
    assert states() == {"READY", "WAITING"}
    assert Campaign.objects.get(name="ctl").status == "running"
    hullhunter("campaign", "cancel", "ctl", env=worker_env)
    assert states() == {"DEFUSED"}
    assert Campaign.objects.get(name="ctl").status == "cancelled"
    failed = subprocess.run(
        [sys.executable, "-m", "hullhunter", "campaign", "status", "nope"],
        capture_output=True, text=True, env=worker_env,
    )  # fmt: skip
    assert failed.returncode == 1
    assert failed.stderr.startswith("error: no campaign named 'nope' (known: ctl)")
