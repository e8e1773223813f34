"""A tiny campaign run by a SLURM job that qlaunch submits, with hullhunter's own config files."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
import yaml
from pymongo import MongoClient

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

CAMPAIGN = {
    "name": "slurm-tiny",
    "chemical_space": {"systems": ["Ag-Au-Cu"]},
    "seeds": {"max_seeds": 6, "elemental_polymorphs": 1},
    "generators": {
        "substitution": {"limit": 20},
        "saps": {"limit": 20},
        "prototypes": {"limit": 8},
    },
    "screening": {"top_k": 3, "exploration_fraction": 0.5, "tta": False},
    "model": {"n_models": 2, "epochs": 20},
    "oracle": {"fmax": 0.2, "max_steps": 60, "batch_size": 3},
    "budget": {"rounds": 1},
}


def test_campaign_through_qlaunch_on_slurm(slurm_cluster, mongo_uri, tmp_path, wait_for):
    home = tmp_path / "home"
    home.mkdir()
    db_name = f"hh_qlaunch_{uuid.uuid4().hex[:8]}"
    # workers read the database from the shared config file, not from the submitting shell
    (home / "config.yaml").write_text(
        yaml.safe_dump({"db_uri": mongo_uri, "db_name": db_name, "torch_threads": 1})
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HULLHUNTER_")}
    env["HULLHUNTER_HOME"] = str(home)

    def hullhunter(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "hullhunter", *args], capture_output=True, text=True, env=env
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    hullhunter(
        "fireworks-config", "--queue", "debug", "--walltime", "00:30:00", "--cpus-per-task", "2"
    )
    fw_dir = home / "fw_config"
    qadapter = yaml.safe_load((fw_dir / "my_qadapter.yaml").read_text())
    # a pilot by default: one SLURM job runs every job of the campaign, including those
    # added while it runs
    assert "rapidfire --nlaunches 0 --timeout 1620" in qadapter["rocket_launch"]

    campaign_file = tmp_path / "campaign.yaml"
    campaign_file.write_text(yaml.safe_dump(CAMPAIGN))
    hullhunter("campaign", "submit", str(campaign_file))

    launch_dir = tmp_path / "launches"
    launch_dir.mkdir()
    submitted = subprocess.run(
        ["qlaunch", "-c", str(fw_dir), "singleshot"],
        capture_output=True, text=True, env=env, cwd=launch_dir, timeout=120,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr

    database = MongoClient(mongo_uri)[db_name]

    def states() -> set[str]:
        return set(database.fireworks.distinct("state", {"spec.hullhunter_campaign": "slurm-tiny"}))

    def finished() -> bool:
        # the last job marks the campaign done, then FireWorks completes its launch: wait
        # for both (under load the second came after the first was seen)
        campaign = database.campaigns.find_one({"name": "slurm-tiny"})
        settled = not states() & {"RUNNING", "RESERVED", "READY", "WAITING"}
        return campaign is not None and campaign["status"] in ("completed", "failed") and settled

    wait_for(finished, 900, "the campaign to complete inside the SLURM job")
    assert database.campaigns.find_one({"name": "slurm-tiny"})["status"] == "completed"
    launches = list(database.launches.find({}, {"host": 1, "action": 1}))
    assert launches, "fireworks ran through the LaunchPad"
    assert states() == {"COMPLETED"}
    assert [r["number"] for r in database.rounds.find().sort("number", 1)] == [0, 1]
    assert database.calculations.count_documents({"round": 1}) >= 1
    job_logs = list((home / "fw_config" / "logs").glob("*"))
    assert job_logs or list(launch_dir.rglob("*.out")), "the SLURM job wrote its output"
    status = hullhunter("campaign", "status", "slurm-tiny")
    assert "completed" in status
