"""`hullhunter fireworks-config` on a real SLURM cluster: the site's partition found and checked."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

pytestmark = pytest.mark.slurm


def fireworks_config(home, mongo_uri: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HULLHUNTER_")}
    env |= {"HULLHUNTER_HOME": str(home), "HULLHUNTER_DB_URI": mongo_uri}
    return subprocess.run(
        [sys.executable, "-m", "hullhunter", "fireworks-config", *args],
        capture_output=True,
        text=True,
        env=env,
    )


def test_default_partition_is_used_and_a_wrong_one_refused(slurm_cluster, mongo_uri, tmp_path):
    chosen = fireworks_config(tmp_path / "default", mongo_uri, "--account", "acme")
    assert chosen.returncode == 0, chosen.stderr
    adapter = yaml.safe_load((tmp_path / "default" / "fw_config" / "my_qadapter.yaml").read_text())
    assert adapter["queue"] == "debug"  # the local cluster's only (default) partition
    assert "SLURM partition: debug (the cluster's default partition (sinfo))" in chosen.stdout
    assert "account 'acme' not checked" in chosen.stdout  # no accounting database here

    refused = fireworks_config(tmp_path / "wrong", mongo_uri, "--queue", "normal")
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1
    assert "partition 'normal' is not one of this cluster's (debug, from sinfo)" in refused.stderr
    assert not (tmp_path / "wrong" / "fw_config").exists()  # nothing written


def test_a_job_script_slurm_would_reject_is_refused_before_writing(
    slurm_cluster, mongo_uri, tmp_path
):
    """qlaunch logs a failing sbatch and exits 0; fireworks-config asks sbatch --test-only."""
    refused = fireworks_config(tmp_path, mongo_uri, "--cpus-per-task", "512")
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1
    assert "SLURM would reject the workers' job script (sbatch --test-only:" in refused.stderr
    assert not list((tmp_path / "fw_config").glob("*.yaml"))  # nothing written
