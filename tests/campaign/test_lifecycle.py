"""Campaign life cycle against crashes: a process killed inside a submission strands nothing.

Each crash is real: a child process is SIGKILLed at the named moment (its ``add_wf`` or the
bookkeeping after it is replaced by a kill), then the documented commands repair it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import psutil
import pytest
import yaml

from hullhunter.campaign_config import load_config
from hullhunter.documents import Campaign, Round
from hullhunter.fireworks_config import get_launchpad
from hullhunter.workflows.campaign import resume, submit_campaign

pytestmark = pytest.mark.slow  # each crash is a fresh Python process (about 10 s)

MINIMAL = {
    "chemical_space": {"systems": ["Ag-Au-Cu"]},
    "seeds": {"max_seeds": 4, "elemental_polymorphs": 1},
    "budget": {"rounds": 2},
}

CRASH = """
import os, signal, sys
import fireworks
import hullhunter.workflows.jobs as jobs
from hullhunter.campaign_config import load_config
from hullhunter.db import connect
from hullhunter.workflows.campaign import submit_campaign

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

where, path, round_number = sys.argv[1], sys.argv[2], int(sys.argv[3])
if where == "before add_wf":
    fireworks.LaunchPad.add_wf = die
else:
    jobs._record_workflow = die
if round_number == 0:
    submit_campaign(load_config(path))
else:
    connect()
    jobs.submit_round(load_config(path).name, round_number)
"""


@pytest.fixture
def campaign_file(database, tmp_path):
    get_launchpad().reset("", require_password=False)
    path = tmp_path / "crash.yaml"
    path.write_text(yaml.safe_dump({"name": "crash", **MINIMAL}))
    return path


def crash(where: str, path, round_number: int) -> None:
    child = subprocess.run(
        [sys.executable, "-c", CRASH, where, str(path), str(round_number)],
        capture_output=True,
        text=True,
        env=os.environ,
    )
    assert child.returncode == -9, child.stderr[-2000:]


def submit(path) -> str:
    return submit_campaign(load_config(path))[1]


def workflows(round_number: int) -> int:
    return get_launchpad().workflows.count_documents({"name": f"crash round {round_number}"})


def test_submit_killed_before_add_wf_is_repaired_by_the_next_submit(campaign_file):
    crash("before add_wf", campaign_file, 0)
    marker = Round.objects.get(campaign="crash", number=0)
    assert marker.status == "submitted" and marker.workflow_id is None
    assert workflows(0) == 0  # the stranded state the next submit must repair

    assert "round(s) [0] submitted again" in submit(campaign_file)
    assert workflows(0) == 1
    root = Round.objects.get(campaign="crash", number=0).workflow_id
    assert Campaign.objects.get(name="crash").workflow_ids == [root]
    states = set(get_launchpad().fireworks.distinct("state", {"spec.hullhunter_campaign": "crash"}))
    assert states == {"READY", "WAITING"}
    assert "nothing added" in submit(campaign_file)
    assert workflows(0) == 1


def test_next_round_killed_before_add_wf_is_repaired_by_resume(campaign_file):
    submit(campaign_file)
    crash("before add_wf", campaign_file, 1)  # as the advance job submits round 1
    assert Round.objects.get(campaign="crash", number=1).status == "submitted"
    assert workflows(1) == 0
    assert resume("crash") == (0, [1])
    assert workflows(1) == 1
    assert resume("crash") == (0, [])
    assert workflows(1) == 1


def test_killed_after_add_wf_is_recorded_not_added_twice(campaign_file):
    crash("after add_wf", campaign_file, 0)
    assert workflows(0) == 1
    assert Round.objects.get(campaign="crash", number=0).workflow_id is None
    assert "nothing added" in submit(campaign_file)
    assert workflows(0) == 1
    root = Round.objects.get(campaign="crash", number=0).workflow_id
    assert root is not None
    assert Campaign.objects.get(name="crash").workflow_ids == [root]


def ended(pid: int) -> bool:
    """Gone, or a zombie (no init reaps orphans in some containers)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


TERMINATED_RUN = """
import signal, subprocess, sys, time
from hullhunter.workflows import campaign

signal.signal(signal.SIGTERM, campaign._die_with_children)
code = subprocess.Popen(["sleep", "600"])  # a DFT code custodian started
server = subprocess.Popen(["sleep", "600"], start_new_session=True)  # as the embedded MongoDB
print(code.pid, server.pid, flush=True)
time.sleep(600)
"""


def test_terminated_local_run_ends_the_programs_its_jobs_started():
    run = subprocess.Popen(
        [sys.executable, "-c", TERMINATED_RUN], stdout=subprocess.PIPE, text=True
    )
    code, server = (int(pid) for pid in run.stdout.readline().split())
    try:
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=30) == -signal.SIGTERM  # still dies of the signal: job lost
        assert ended(code)
        assert not ended(server)
    finally:
        for pid in (code, server):
            if psutil.pid_exists(pid):
                os.kill(pid, signal.SIGKILL)
