"""Integration: real SLURM (slurm/local-cluster) runs FireWorks jobs from the slurm/ templates.

Covers a plain sbatch job, `qlaunch rapidfire` of a two-step workflow, a firework whose SLURM
job is cancelled mid-run being found by `lpad detect_lostruns` and rerun, the pilot
worker.sbatch draining a workflow inside one allocation (one at a time and `multi 2`), and
reservation mode (`qlaunch -r`) with per-firework `_queueadapter` overrides.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from fireworks import Firework, LaunchPad, ScriptTask, Workflow

from hullhunter.fireworks_config import worker_exports

pytestmark = pytest.mark.slurm

LOCAL_CLUSTER = Path(__file__).resolve().parents[2] / "slurm" / "local-cluster"
BIN_DIR = Path(sys.executable).parent
FW_WAIT_S = 120


def squeue_job_ids(job_name: str) -> list[str]:
    """Ids of the jobs named `job_name` SLURM still lists (pending, running or completing)."""
    command = ["squeue", "-h", "-o", "%i", "-n", job_name]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)
    return result.stdout.split()


def fw_states(launchpad: LaunchPad) -> dict[str, str]:
    """Firework name -> state, for every firework in the LaunchPad."""
    return {
        doc["name"]: doc["state"] for doc in launchpad.fireworks.find({}, {"name": 1, "state": 1})
    }


def two_step_workflow(step1_script: str, category: str = "cpu") -> Workflow:
    """step1 runs `step1_script`; step2, its child, records its SLURM job id."""
    step1 = Firework(ScriptTask.from_str(step1_script), spec={"_category": category}, name="step1")
    step2 = Firework(
        ScriptTask.from_str('echo "job=$SLURM_JOB_ID" > step2.txt'),
        spec={"_category": category},
        name="step2",
        parents=[step1],
    )
    return Workflow([step1, step2], name=f"wf-{uuid.uuid4().hex[:6]}")


def launch_output(launchpad: LaunchPad, fw_name: str, file_name: str) -> str:
    """Text of `file_name` in the folder where the latest launch of `fw_name` ran."""
    fw_id = launchpad.get_fw_ids({"name": fw_name})[0]
    launch_dir = launchpad.get_fw_by_id(fw_id).launches[-1].launch_dir
    return (Path(launch_dir) / file_name).read_text()


def qlaunch(setup, *args: str) -> subprocess.CompletedProcess[str]:
    """Run FireWorks' qlaunch on the rendered config folder (with its FW_config.yaml)."""
    return subprocess.run(
        [BIN_DIR / "qlaunch", "-c", setup.config_dir, *args],
        cwd=setup.launch_dir,
        env=os.environ | {"FW_CONFIG_FILE": str(setup.config_dir / "FW_config.yaml")},
        capture_output=True,
        text=True,
        timeout=FW_WAIT_S,
    )


def test_start_is_idempotent_and_sized_to_this_host(slurm_cluster: Path) -> None:
    again = subprocess.run([LOCAL_CLUSTER, "start"], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "already running" in again.stderr
    assert subprocess.run([LOCAL_CLUSTER, "status"], capture_output=True).returncode == 0
    node = subprocess.run(
        ["sinfo", "-h", "-N", "-o", "%N %c %t %P"], capture_output=True, text=True, check=True
    ).stdout.split()
    host, cpus, state, partition = node
    assert (host, cpus, partition) == (
        socket.gethostname().split(".")[0],
        str(os.cpu_count()),
        "debug*",
    )
    assert state in ("idle", "mix", "alloc"), f"node state {state}: it should accept jobs"


def test_sbatch_job_completes_with_its_output_file(
    slurm_cluster: Path, tmp_path: Path, wait_for
) -> None:
    job_name = f"hh-trivial-{uuid.uuid4().hex[:6]}"
    submitted = subprocess.run(
        [
            *("sbatch", "--parsable", "-J", job_name, "-o", tmp_path / "out-%j.txt"),
            *("--wrap", 'echo "hello from job $SLURM_JOB_ID on $(hostname -s)"'),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    job_id = submitted.stdout.strip().split(";")[0]
    wait_for(lambda: not squeue_job_ids(job_name), 60, f"job {job_id} to leave the queue")
    job = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
    assert "JobState=COMPLETED" in job and "ExitCode=0:0" in job
    expected = f"hello from job {job_id} on {socket.gethostname().split('.')[0]}\n"
    assert (tmp_path / f"out-{job_id}.txt").read_text() == expected


def test_qlaunch_rapidfire_runs_a_dependent_workflow(worker_setup, wait_for) -> None:
    launchpad = worker_setup.launchpad
    step1_script = (
        'echo "job=$SLURM_JOB_ID jobflow=$JOBFLOW_CONFIG_FILE home=$HULLHUNTER_HOME" > step1.txt;'
        'echo "vasp=$HULLHUNTER_VASP_CMD fw=$FW_CONFIG_FILE" >> step1.txt'
    )
    launchpad.add_wf(two_step_workflow(step1_script))

    started = time.perf_counter()
    result = qlaunch(worker_setup, "rapidfire", "--nlaunches", "0", "--sleep", "1")
    wait_for(
        lambda: set(fw_states(launchpad).values()) == {"COMPLETED"},
        FW_WAIT_S,
        f"both fireworks COMPLETED (qlaunch log:\n{result.stderr[-2000:]})",
    )
    round_trip_s = time.perf_counter() - started
    print(f"qlaunch round trip for 2 dependent fireworks: {round_trip_s:.1f} s")

    step1 = launch_output(launchpad, "step1", "step1.txt")
    step2 = launch_output(launchpad, "step2", "step2.txt")
    job1 = re.search(r"job=(\d+) ", step1)
    job2 = re.search(r"job=(\d+)$", step2.strip())
    assert job1 and job2, "each firework must run inside a SLURM job"
    assert job1.group(1) != job2.group(1), "singleshot mode runs one firework per SLURM job"
    assert f"jobflow={worker_setup.jobflow_config} " in step1
    assert f"home={worker_setup.hullhunter_home}\n" in step1
    assert f"vasp=srun -n 1 vasp_std fw={worker_setup.config_dir / 'FW_config.yaml'}\n" in step1
    fw_by_name = {fw.name: fw for fw in map(launchpad.get_fw_by_id, launchpad.get_fw_ids())}
    assert fw_by_name["step2"].launches[0].time_start >= fw_by_name["step1"].launches[0].time_end


@pytest.mark.slow
def test_cancelled_job_is_detected_as_lost_and_rerun(worker_setup, wait_for) -> None:
    launchpad = worker_setup.launchpad
    lp_file = str(worker_setup.config_dir / "my_launchpad.yaml")
    # The first run leaves a marker and hangs; the rerun sees the marker and finishes at once,
    # as a rerun batch skips candidates whose results are already stored.
    marker = worker_setup.hullhunter_home / "step1.started"
    step1_script = (
        f"if [ -e {marker} ]; then echo resumed > step1.txt; else touch {marker}; sleep 300; fi"
    )
    launchpad.add_wf(two_step_workflow(step1_script))

    qlaunch(worker_setup, "singleshot")
    wait_for(lambda: fw_states(launchpad)["step1"] == "RUNNING", 60, "step1 to be RUNNING")
    wait_for(marker.exists, 30, "step1's script to start")
    (job_id,) = squeue_job_ids(worker_setup.job_name)
    subprocess.run(["scancel", job_id], check=True)
    wait_for(lambda: not squeue_job_ids(worker_setup.job_name), 60, f"job {job_id} to end")
    assert fw_states(launchpad)["step1"] == "RUNNING", "a killed job leaves its firework RUNNING"

    time.sleep(1.5)  # past the 1 s expiration given below: no ping since the job started
    detected = subprocess.run(
        [BIN_DIR / "lpad", "-l", lp_file, "detect_lostruns", "--time", "1", "--rerun"],
        capture_output=True,
        text=True,
        check=True,
    )
    step1_id = launchpad.get_fw_ids({"name": "step1"})[0]
    assert f"Detected 1 lost FWs: [{step1_id}]" in detected.stdout + detected.stderr
    assert fw_states(launchpad)["step1"] == "READY"

    qlaunch(worker_setup, "rapidfire", "--nlaunches", "0", "--sleep", "1")
    wait_for(
        lambda: set(fw_states(launchpad).values()) == {"COMPLETED"},
        FW_WAIT_S,
        "step1 (rerun) and step2 COMPLETED",
    )
    assert launch_output(launchpad, "step1", "step1.txt") == "resumed\n"


def test_cancelled_job_is_found_from_squeue_at_once_and_a_healthy_one_left_alone(
    worker_setup, wait_for
) -> None:
    launchpad = worker_setup.launchpad
    for name in ("doomed", "healthy"):
        spec = {"_category": "cpu", "hullhunter_campaign": "sq"}
        launchpad.add_wf(Firework(ScriptTask.from_str("sleep 300"), spec=spec, name=name))
    qlaunch(worker_setup, "rapidfire", "--nlaunches", "2")  # two jobs, one firework each
    wait_for(
        lambda: set(fw_states(launchpad).values()) == {"RUNNING"}, 90, "both fireworks RUNNING"
    )
    doomed_id = launchpad.get_fw_ids({"name": "doomed"})[0]
    doomed_dir = Path(launchpad.get_fw_by_id(doomed_id).launches[-1].launch_dir)
    listed = subprocess.run(
        ["squeue", "-h", "-o", "%i %Z", "-n", worker_setup.job_name],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    jobs = dict(line.split(" ", 1)[::-1] for line in listed.splitlines())
    (doomed_job,) = [job for folder, job in jobs.items() if doomed_dir.is_relative_to(folder)]
    cancelled = time.monotonic()
    subprocess.run(["scancel", doomed_job], check=True)
    wait_for(lambda: doomed_job not in squeue_job_ids(worker_setup.job_name), 60, "the job to end")

    env = {k: v for k, v in os.environ.items() if not k.startswith("HULLHUNTER_")}
    env |= {
        "HULLHUNTER_HOME": str(worker_setup.hullhunter_home),
        "HULLHUNTER_DB_URI": launchpad.host,
        "HULLHUNTER_DB_NAME": launchpad.name,
    }
    rerun = subprocess.run(
        [sys.executable, "-m", "hullhunter", "campaign", "rerun-lost", "sq"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    # found from SLURM's own state long before the 5-minute ping window
    assert f"1 lost job(s) of sq set to rerun: [{doomed_id}]" in rerun.stdout
    assert time.monotonic() - cancelled < 120
    assert fw_states(launchpad) == {"doomed": "READY", "healthy": "RUNNING"}
    subprocess.run(["scancel", "-n", worker_setup.job_name], check=True)


def submit_pilot(setup, render, rocket_mode: str, ntasks: int = 1) -> str:
    """Render slurm/worker.sbatch for this test's LaunchPad, sbatch it, return the job id."""
    script = setup.config_dir / "worker.sbatch"
    script.write_text(
        render(
            "worker.sbatch",
            JOB_NAME=setup.job_name,
            QUEUE="debug",
            NODES=1,
            NTASKS=ntasks,
            CPUS_PER_TASK=1,
            WALLTIME="00:05:00",
            SBATCH_EXTRA="#SBATCH --comment=hullhunter-pilot",
            LOGDIR=setup.log_dir,
            LAUNCH_DIR=setup.launch_dir,
            RLAUNCH=BIN_DIR / "rlaunch",
            FW_CONFIG_DIR=setup.config_dir,
            ROCKET_MODE=rocket_mode,
            PYTHON_BIN_DIR=BIN_DIR,
            JOBFLOW_CONFIG_FILE=setup.jobflow_config,
            HULLHUNTER_HOME=setup.hullhunter_home,
            WORKER_EXPORTS=worker_exports({"vasp_cmd": "vasp_std"}),
        )
    )
    submitted = subprocess.run(["sbatch", "--parsable", script], capture_output=True, text=True)
    assert submitted.returncode == 0, submitted.stderr
    return submitted.stdout.strip().split(";")[0]


def test_pilot_worker_sbatch_drains_its_category_in_one_job(worker_setup, render, wait_for) -> None:
    launchpad = worker_setup.launchpad
    launchpad.add_wf(two_step_workflow('echo "job=$SLURM_JOB_ID" > step1.txt'))
    gpu_only = Firework(ScriptTask.from_str("true"), spec={"_category": "gpu"}, name="train")
    launchpad.add_wf(Workflow([gpu_only], name="gpu-only"))

    job_id = submit_pilot(worker_setup, render, "rapidfire --nlaunches 0 --sleep 1 --timeout 120")
    job = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True)
    assert "Comment=hullhunter-pilot" in job.stdout, "SBATCH_EXTRA lines must reach sbatch"
    wait_for(
        lambda: not squeue_job_ids(worker_setup.job_name), FW_WAIT_S, f"pilot job {job_id} to end"
    )

    assert fw_states(launchpad) == {"step1": "COMPLETED", "step2": "COMPLETED", "train": "READY"}
    assert launch_output(launchpad, "step1", "step1.txt") == f"job={job_id}\n"
    assert launch_output(launchpad, "step2", "step2.txt") == f"job={job_id}\n"
    log = (worker_setup.log_dir / f"{worker_setup.job_name}-{job_id}.out").read_text()
    assert f"hullhunter worker: job {job_id}" in log and "hullhunter worker: done" in log


def test_pilot_multi_packs_fireworks_side_by_side(worker_setup, render, wait_for) -> None:
    launchpad = worker_setup.launchpad
    timed = 'date +%s.%N > start; echo "$SLURM_JOB_ID" > job; sleep 3; date +%s.%N > end'
    for name in ("relax-a", "relax-b"):
        firework = Firework(ScriptTask.from_str(timed), spec={"_category": "cpu"}, name=name)
        launchpad.add_wf(Workflow([firework], name=name))

    job_id = submit_pilot(
        worker_setup, render, "multi 2 --nlaunches 0 --sleep 1 --timeout 120", ntasks=2
    )
    wait_for(
        lambda: not squeue_job_ids(worker_setup.job_name), FW_WAIT_S, f"pilot job {job_id} to end"
    )

    assert fw_states(launchpad) == {"relax-a": "COMPLETED", "relax-b": "COMPLETED"}
    spans = {}
    for name in ("relax-a", "relax-b"):
        assert launch_output(launchpad, name, "job") == f"{job_id}\n"
        start, end = (float(launch_output(launchpad, name, f)) for f in ("start", "end"))
        spans[name] = (start, end)
    (start_a, end_a), (start_b, end_b) = spans.values()
    assert start_a < end_b and start_b < end_a, f"the two fireworks did not overlap: {spans}"


@pytest.mark.slow
def test_reservation_mode_applies_queueadapter_overrides_and_packs_jobs(
    worker_setup, wait_for
) -> None:
    launchpad = worker_setup.launchpad
    timed = "date +%s.%N > start; sleep 8; date +%s.%N > end"  # long enough to overlap
    overrides = {"relax-a": {}, "relax-b": {"walltime": "00:03:00"}}
    for name, queueadapter in overrides.items():
        spec = {"_category": "cpu", "_queueadapter": queueadapter}
        launchpad.add_wf(Workflow([Firework(ScriptTask.from_str(timed), spec=spec, name=name)]))

    qlaunch(worker_setup, "-r", "rapidfire", "--nlaunches", "0", "--sleep", "1")
    wait_for(
        lambda: set(fw_states(launchpad).values()) == {"COMPLETED"},
        FW_WAIT_S,
        "both reserved fireworks COMPLETED",
    )

    time_limits = {}
    spans = {}
    for name in overrides:
        fw_id = launchpad.get_fw_ids({"name": name})[0]
        job_id = launchpad.get_reservation_id_from_fw_id(fw_id)
        job = subprocess.run(
            ["scontrol", "show", "job", str(job_id)], capture_output=True, text=True
        )
        time_limits[name] = re.search(r"TimeLimit=(\S+)", job.stdout).group(1)
        spans[name] = tuple(float(launch_output(launchpad, name, f)) for f in ("start", "end"))
    assert time_limits == {"relax-a": "00:05:00", "relax-b": "00:03:00"}
    (start_a, end_a), (start_b, end_b) = spans.values()
    assert start_a < end_b and start_b < end_a, f"1-core jobs should share the node: {spans}"
