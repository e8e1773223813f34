"""slurm/ templates render into files FireWorks and sbatch accept; local-cluster rejects bad use.

These run anywhere (no SLURM needed): they check what `hullhunter fireworks-config` relies on.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import string
import subprocess
from pathlib import Path

import pytest
import yaml
from fireworks import FWorker
from fireworks.utilities.fw_serializers import load_object

from hullhunter.fireworks_config import worker_env, worker_exports

SLURM_DIR = Path(__file__).resolve().parents[2] / "slurm"
TEMPLATES = ["my_qadapter.yaml", "my_fworker.yaml", "worker.sbatch"]
# A header entry: "#   NAME" or "#   NAME, NAME" at three spaces' indent (descriptions: deeper).
PLACEHOLDER_ENTRY = re.compile(r"^#   ([A-Z][A-Z0-9_]*(?:, [A-Z][A-Z0-9_]*)*)(?:\s|$)")

QADAPTER_VALUES = {
    "RLAUNCH": "/opt/venv/bin/rlaunch",
    "FW_CONFIG_DIR": "/shared/hh/fw",
    "ROCKET_MODE": "singleshot",
    "NODES": 1,
    "NTASKS": 16,
    "CPUS_PER_TASK": 1,
    "WALLTIME": "00:05:00",
    "QUEUE": "short",
    "ACCOUNT": None,
    "QOS": None,
    "GRES": None,
    "MEM": None,
    "JOB_NAME": "hh-relax",
    "LOGDIR": "/shared/hh/qlogs",
    "PYTHON_BIN_DIR": "/opt/venv/bin",
    "JOBFLOW_CONFIG_FILE": "/shared/hh/jobflow.yaml",
    "HULLHUNTER_HOME": "/shared/hh",
    "WORKER_EXPORTS": worker_exports({"vasp_cmd": "srun -n 16 vasp_std"}, indent="  "),
}


def render(name: str, **values: object) -> str:
    """Fill slurm/<name> the way `hullhunter fireworks-config` does (None renders as empty)."""
    template = string.Template((SLURM_DIR / name).read_text())
    return template.substitute(
        {key: "" if value is None else str(value) for key, value in values.items()}
    )


def listed_placeholders(text: str) -> set[str]:
    """Names in the `# Placeholders:` header block of a template."""
    lines = text.splitlines()
    start = lines.index("# Placeholders:") + 1
    names: set[str] = set()
    for line in lines[start:]:
        if not line.startswith("#") or line.startswith("#SBATCH"):
            break
        entry = PLACEHOLDER_ENTRY.match(line)
        if entry:
            names.update(entry.group(1).split(", "))
    return names


@pytest.mark.parametrize("name", TEMPLATES)
def test_header_lists_exactly_the_placeholders_used(name: str) -> None:
    text = (SLURM_DIR / name).read_text()
    used = set(string.Template(text).get_identifiers())
    assert string.Template(text).is_valid(), (
        f"{name} has a stray '$' (write '$$' for a literal one)"
    )
    assert listed_placeholders(text) == used


def test_qadapter_renders_a_slurm_script_without_empty_options() -> None:
    adapter = load_object(yaml.safe_load(render("my_qadapter.yaml", **QADAPTER_VALUES)))
    script = adapter.get_script_str("/scratch/launch_1")
    assert adapter.q_type == "SLURM"
    assert "#SBATCH --partition=short" in script
    assert "#SBATCH --time=00:05:00" in script
    assert "#SBATCH --ntasks=16" in script
    assert "--account" not in script and "--gres" not in script and "--qos" not in script
    assert "export PATH=/opt/venv/bin:$PATH" in script
    assert "export JOBFLOW_CONFIG_FILE=/shared/hh/jobflow.yaml" in script
    assert "export FW_CONFIG_FILE=/shared/hh/fw/FW_config.yaml" in script
    assert "export HULLHUNTER_HOME=/shared/hh" in script
    assert "export HULLHUNTER_VASP_CMD='srun -n 16 vasp_std'" in script
    rlaunch = "/opt/venv/bin/rlaunch -c /shared/hh/fw -w /shared/hh/fw/my_fworker_slurm.yaml"
    assert f"cd /scratch/launch_1\n{rlaunch} singleshot" in script


def test_qadapter_optional_options_appear_when_given() -> None:
    values = QADAPTER_VALUES | {"ACCOUNT": "mat123", "GRES": "gpu:1", "QOS": "high", "MEM": "4G"}
    script = load_object(yaml.safe_load(render("my_qadapter.yaml", **values))).get_script_str(".")
    for line in ("--account=mat123", "--gres=gpu:1", "--qos=high", "--mem=4G"):
        assert f"#SBATCH {line}" in script


@pytest.mark.parametrize(
    ("category", "expected_query"),
    [("cpu", "cpu"), ("gpu", "gpu"), ("[cpu, gpu]", {"$in": ["cpu", "gpu"]})],
)
def test_fworker_takes_only_its_categories(category: str, expected_query: object) -> None:
    text = render(
        "my_fworker.yaml",
        WORKER_NAME="cluster-cpu",
        CATEGORY=category,
        WORKER_ENV=worker_env({"vasp_cmd": "srun --mpi=pmix vasp_std"}),
    )
    worker = FWorker.from_dict(yaml.safe_load(text))
    assert worker.name == "cluster-cpu"
    assert worker.query["spec._category"] == expected_query
    assert worker.env == {"vasp_cmd": "srun --mpi=pmix vasp_std"}


def test_worker_sbatch_is_valid_bash_with_directives_first(tmp_path: Path) -> None:
    values = {
        key: value
        for key, value in QADAPTER_VALUES.items()
        if key not in ("ACCOUNT", "QOS", "GRES", "MEM")
    }
    values |= {
        "ROCKET_MODE": "rapidfire --nlaunches 0 --timeout 3000",
        "SBATCH_EXTRA": "#SBATCH --account=mat123\n#SBATCH --qos=high",
        "LAUNCH_DIR": "/shared/hh/runs",
        "WORKER_EXPORTS": worker_exports({"vasp_cmd": "srun -n 16 vasp_std"}),
    }
    script = tmp_path / "worker.sbatch"
    script.write_text(render("worker.sbatch", **values))
    assert subprocess.run(["bash", "-n", script], capture_output=True).returncode == 0
    lines = script.read_text().splitlines()
    first_command = next(
        i for i, line in enumerate(lines) if line.strip() and not line.startswith("#")
    )
    directives = [line for line in lines[:first_command] if line.startswith("#SBATCH")]
    assert "#SBATCH --partition=short" in directives
    assert "#SBATCH --account=mat123" in directives
    assert "#SBATCH --time=00:05:00" in directives
    rocket = '"/opt/venv/bin/rlaunch" -c "/shared/hh/fw" rapidfire --nlaunches 0 --timeout 3000'
    assert rocket in lines
    assert "export HULLHUNTER_VASP_CMD='srun -n 16 vasp_std'" in lines


def test_local_cluster_rejects_unknown_command() -> None:
    result = subprocess.run(
        [SLURM_DIR / "local-cluster", "restart"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "usage:" in result.stderr and "start|stop|status|env" in result.stderr


@pytest.mark.skipif(
    platform.system() != "Linux", reason="the non-root check runs after the Linux check"
)
def test_local_cluster_start_needs_root() -> None:
    command = [str(SLURM_DIR / "local-cluster"), "start"]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("setpriv (util-linux) is needed to run the script as an unprivileged user")
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "must run as root" in result.stderr


def test_local_cluster_state_folder_follows_the_environment(tmp_path: Path) -> None:
    env = os.environ | {"HULLHUNTER_SLURM_DIR": str(tmp_path)}
    script = SLURM_DIR / "local-cluster"
    printed = subprocess.run([script, "env"], capture_output=True, text=True, env=env)
    assert printed.stdout == f"export SLURM_CONF={tmp_path}/slurm.conf\n"
    status = subprocess.run([script, "status"], capture_output=True, text=True, env=env)
    assert status.returncode == 3
    assert status.stdout.splitlines() == [
        "munged: stopped",
        "slurmctld: stopped",
        "slurmd: stopped",
    ]


def test_fireworks_config_writes_pilot_jobs_by_default(
    hh_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hullhunter.fireworks_config import QueueSettings, write_config

    monkeypatch.delenv("SLURM_CONF", raising=False)  # no cluster judges the script here

    pilot = write_config(hh_settings, folder=tmp_path / "pilot", queue=QueueSettings())
    adapter = load_object(yaml.safe_load(pilot["qadapter"].read_text()))
    words = adapter["rocket_launch"].split()
    assert words[-5:] == ["rapidfire", "--nlaunches", "0", "--timeout", str(24 * 3600 - 600)]
    short = QueueSettings(walltime="00:30:00")
    assert short.rlaunch_mode() == "rapidfire --nlaunches 0 --timeout 1620"  # a tenth to spare
    single = QueueSettings(rocket_mode="singleshot")
    written = write_config(hh_settings, folder=tmp_path / "single", queue=single)
    assert yaml.safe_load(written["qadapter"].read_text())["rocket_launch"].endswith("singleshot")
    with pytest.raises(ValueError, match="walltime 'tomorrow' is not"):
        QueueSettings(walltime="tomorrow").rlaunch_mode()
