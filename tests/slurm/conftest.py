"""Fixtures for the SLURM integration tests: the one-node cluster and rendered templates.

The cluster is started once per session with `slurm/local-cluster start` (which installs the
Debian packages when they are missing) and stopped at the end only if this session started it.
MongoDB is the suite's session mongod (`mongo_uri` in tests/conftest.py).
"""

from __future__ import annotations

import os
import platform
import shutil
import string
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from fireworks import LaunchPad

from hullhunter.fireworks_config import (
    SLURM_FWORKER_FILE,
    SLURM_LAUNCHER,
    worker_env,
    worker_exports,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SLURM_DIR = REPO_ROOT / "slurm"
LOCAL_CLUSTER = SLURM_DIR / "local-cluster"
PYTHON_BIN_DIR = Path(sys.executable).parent
CLUSTER_START_TIMEOUT_S = 900  # the first start on a fresh machine includes apt-get install


def render_template(name: str, **values: object) -> str:
    """Fill the `${NAME}` placeholders of slurm/<name>; a missing value raises KeyError."""
    template = string.Template((SLURM_DIR / name).read_text())
    return template.substitute(
        {key: "" if value is None else str(value) for key, value in values.items()}
    )


def wait_until(
    condition: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.5
) -> None:
    """Poll `condition` until it is true; fail the test naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(poll_s)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


@pytest.fixture(scope="session")
def render() -> Callable[..., str]:
    """`render(name, **values)`: the text of template slurm/<name> with its placeholders filled."""
    return render_template


@pytest.fixture(scope="session")
def wait_for() -> Callable[..., None]:
    """`wait_for(condition, timeout_s, what)`: poll until true, fail naming `what` on timeout."""
    return wait_until


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[Path]:
    """A running one-node SLURM cluster; yields its slurm.conf and exports SLURM_CONF."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip(
            f"local SLURM needs Linux x86-64 (this is {platform.system()} {platform.machine()})"
        )
    if os.geteuid() != 0:
        pytest.skip(
            "local SLURM needs root (apt install, daemons as SlurmUser=root); run the tests as root"
        )
    was_running = subprocess.run([LOCAL_CLUSTER, "status"], capture_output=True).returncode == 0
    started = subprocess.run(
        [LOCAL_CLUSTER, "start"], capture_output=True, text=True, timeout=CLUSTER_START_TIMEOUT_S
    )
    assert started.returncode == 0, f"local-cluster start failed:\n{started.stderr}"
    conf_line = subprocess.run(
        [LOCAL_CLUSTER, "env"], capture_output=True, text=True, check=True
    ).stdout
    slurm_conf = Path(conf_line.strip().removeprefix("export SLURM_CONF="))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLURM_CONF", str(slurm_conf))
        yield slurm_conf
    if not was_running:
        subprocess.run([LOCAL_CLUSTER, "stop"], capture_output=True, timeout=120)


@dataclass(frozen=True)
class WorkerSetup:
    """Rendered FireWorks files for one test: its own LaunchPad database and the worker paths."""

    config_dir: Path
    launch_dir: Path
    log_dir: Path
    jobflow_config: Path
    hullhunter_home: Path
    job_name: str
    launchpad: LaunchPad


@pytest.fixture
def worker_setup(slurm_cluster: Path, mongo_uri: str, tmp_path: Path) -> Iterator[WorkerSetup]:
    """my_launchpad.yaml on a fresh database, and my_fworker.yaml + my_qadapter.yaml from slurm/."""
    db_name = f"hh_slurm_{uuid.uuid4().hex[:10]}"
    job_name = f"hh-{uuid.uuid4().hex[:6]}"
    config_dir, launch_dir, log_dir, hullhunter_home = (
        tmp_path / d for d in ("fw", "runs", "qlogs", "home")
    )
    for folder in (config_dir, launch_dir, log_dir, hullhunter_home):
        folder.mkdir()
    jobflow_config = config_dir / "jobflow.yaml"
    docs_store = {
        "type": "MongoURIStore",
        "uri": mongo_uri,
        "database": db_name,
        "collection_name": "outputs",
    }
    jobflow_config.write_text(yaml.safe_dump({"JOB_STORE": {"docs_store": docs_store}}))
    launchpad_doc = {
        "host": mongo_uri,
        "name": db_name,
        "uri_mode": True,
        "logdir": str(log_dir),
    }
    (config_dir / "my_launchpad.yaml").write_text(yaml.safe_dump(launchpad_doc))
    # qlaunch polls the queue every 2 s instead of 5 s after each submission.
    fw_config = {"CONFIG_FILE_DIR": str(config_dir), "QUEUE_UPDATE_INTERVAL": 2}
    (config_dir / "FW_config.yaml").write_text(yaml.safe_dump(fw_config))
    for file, env in (("my_fworker.yaml", {}), (SLURM_FWORKER_FILE, SLURM_LAUNCHER)):
        (config_dir / file).write_text(
            render_template(
                "my_fworker.yaml",
                WORKER_NAME="local-slurm",
                CATEGORY="cpu",
                WORKER_ENV=worker_env({**env, "vasp_cmd": "vasp_std"}),
            )
        )
    (config_dir / "my_qadapter.yaml").write_text(
        render_template(
            "my_qadapter.yaml",
            RLAUNCH=PYTHON_BIN_DIR / "rlaunch",
            FW_CONFIG_DIR=config_dir,
            ROCKET_MODE="singleshot",
            NODES=1,
            NTASKS=1,
            CPUS_PER_TASK=1,
            WALLTIME="00:05:00",
            QUEUE="debug",
            ACCOUNT=None,
            QOS=None,
            GRES=None,
            MEM=None,
            JOB_NAME=job_name,
            LOGDIR=log_dir,
            PYTHON_BIN_DIR=PYTHON_BIN_DIR,
            JOBFLOW_CONFIG_FILE=jobflow_config,
            HULLHUNTER_HOME=hullhunter_home,
            WORKER_EXPORTS=worker_exports({"vasp_cmd": "srun -n 1 vasp_std"}, indent="  "),
        )
    )
    launchpad = LaunchPad.from_file(str(config_dir / "my_launchpad.yaml"))
    launchpad.reset("", require_password=False)
    yield WorkerSetup(
        config_dir, launch_dir, log_dir, jobflow_config, hullhunter_home, job_name, launchpad
    )
    subprocess.run(["scancel", "--name", job_name], check=False, timeout=30)
    launchpad.connection.drop_database(db_name)
    shutil.rmtree(launch_dir, ignore_errors=True)
