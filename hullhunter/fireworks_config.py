"""FireWorks and jobflow configuration on hullhunter's MongoDB.

Writes ``my_launchpad.yaml``, ``my_fworker.yaml``, ``FW_config.yaml`` and ``jobflow.yaml``
into one folder, so the stock ``lpad``, ``rlaunch`` and ``qlaunch`` commands and every
jobflow job use the same database without hand-editing. Workers need two variables:
``FW_CONFIG_FILE`` (FireWorks finds the other files through it) and ``JOBFLOW_CONFIG_FILE``
(otherwise jobflow outputs silently go to an in-memory store).

The files hold the database password, so they and their folder are the owner's only
(0600, 0700). The connection is checked before anything is written.
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import string
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import yaml
from fireworks import LaunchPad
from fireworks.utilities.fw_serializers import load_object
from jobflow import JobStore
from maggma.stores import GridFSStore, MongoStore

from hullhunter.db import check_connection, server_uri
from hullhunter.server import private_folder, write_private
from hullhunter.settings import Settings, get_settings

OUTPUTS_COLLECTION = "outputs"
BLOBS_COLLECTION = "outputs_blobs"
# A running job pings the LaunchPad this often (FireWorks' default is hourly, which left a
# killed worker's job unnoticed for 4 h); five missed pings make it lost.
SLURM_FWORKER_FILE = "my_fworker_slurm.yaml"
SLURM_LAUNCHER = {"launcher": "slurm"}
"""The worker file of SLURM jobs (my_qadapter.yaml runs rlaunch with it): the same worker,
with ``launcher: slurm`` in its env, so every launch a SLURM job makes says so, and a RUNNING
launch outside every running job is known lost at once (:func:`dead_slurm_launches`)."""

LEGACY_ECHO_TEST = "hullhunter"
"""What earlier versions wrote as FireWorks' ECHO_TEST; FireWorks prints it before the output
of every lpad, rlaunch and qlaunch command (which breaks ``lpad get_fws | json`` pipes)."""
PING_TIME_S = 60
LOST_AFTER_S = 5 * PING_TIME_S


def config_dir(settings: Settings | None = None) -> Path:
    """Folder of the generated FireWorks/jobflow files."""
    settings = settings or get_settings()
    return settings.home / "fw_config"


def uri_with_database(uri: str, database: str) -> str:
    """The URI with its path set to ``database`` (FireWorks' ``uri_mode`` reads it there)."""
    parts = urlsplit(uri)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))


def launchpad_config(uri: str, settings: Settings) -> dict:
    return {
        "host": uri_with_database(uri, settings.db_name),
        "uri_mode": True,
        "name": settings.db_name,
        "logdir": None,
        "strm_lvl": "INFO",
    }


def jobflow_config(uri: str, settings: Settings) -> dict:
    """jobflow settings: documents in MongoDB, blobs (weights, trajectories) in GridFS."""
    store = {"uri": uri, "database": settings.db_name}
    return {
        "JOB_STORE": {
            "docs_store": {
                "type": "MongoStore",
                "collection_name": OUTPUTS_COLLECTION,
                **store,
            },
            "additional_stores": {
                "data": {"type": "GridFSStore", "collection_name": BLOBS_COLLECTION, **store}
            },
        }
    }


@dataclass
class QueueSettings:
    """What a SLURM job of this worker asks for (rendered into my_qadapter.yaml)."""

    queue: str = "normal"
    walltime: str = "24:00:00"
    nodes: int = 1
    ntasks: int = 1
    cpus_per_task: int = 1
    account: str | None = None
    qos: str | None = None
    job_name: str = "hullhunter"
    rocket_mode: str | None = None
    """How the job runs fireworks; None: a pilot (:func:`pilot_rocket_mode`)."""

    def rlaunch_mode(self) -> str:
        """The rlaunch arguments of the job: ``rocket_mode``, or a pilot for the walltime."""
        return self.rocket_mode or pilot_rocket_mode(self.walltime)


def pilot_rocket_mode(walltime: str) -> str:
    """A pilot job: ``rlaunch rapidfire`` runs fireworks back to back until none can come,
    and starts none in the last tenth of the walltime (at most 10 minutes), so one allocation
    drains many fireworks and the walltime stops none that began with time to finish."""
    from hullhunter.workflows.oracles.vasp_custodian import parse_slurm_time  # one parser

    total = parse_slurm_time(walltime)
    if total is None:
        raise ValueError(f"walltime {walltime!r} is not [days-]HH:MM:SS; e.g. 24:00:00")
    return f"rapidfire --nlaunches 0 --timeout {total - min(600, total // 10)}"


def _slurm_query(*command: str) -> str | None:
    """A SLURM client command's output, or None where it is missing or fails."""
    if shutil.which(command[0]) is None:
        return None
    try:
        # a healthy cluster answers in well under a second; a broken slurm.conf retries 60 s
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=True)
    except (subprocess.SubprocessError, OSError):
        return None
    return done.stdout


def site_queue(given: str | None) -> tuple[str, str]:
    """The SLURM partition for the workers' jobs and how it was chosen.

    Without ``given``, the cluster's default partition (``sinfo``); a given one must be one of
    the cluster's. Where ``sinfo`` is not available (not a SLURM login node) nothing can be
    checked: the given partition is used as it is, or ``normal``, and the reason says so.
    """
    listed = _slurm_query("sinfo", "-h", "-o", "%P")
    if listed is None:
        if given:
            return given, "not checked: sinfo is not available here"
        return "normal", "sinfo is not available here; pass --queue with your site's partition"
    names = [word.rstrip("*") for word in listed.split()]
    default = next((word.rstrip("*") for word in listed.split() if word.endswith("*")), None)
    if given is None:
        if default is None:
            raise ValueError(
                f"this cluster has no default partition; pass --queue, one of {', '.join(names)}"
            )
        return default, "the cluster's default partition (sinfo)"
    if given not in names:
        raise ValueError(
            f"partition {given!r} is not one of this cluster's ({', '.join(names)}, from sinfo); "
            "pass --queue with one of them"
        )
    return given, "checked with sinfo"


def check_association(kind: str, value: str | None) -> str | None:
    """Refuse a SLURM account or QOS the accounting database does not know (one line);
    returns a note when it cannot be checked (no accounting database), else None."""
    if value is None:
        return None
    shown = _slurm_query("sacctmgr", "-n", "-P", "show", kind, value, "format=name")
    if shown is None:
        return f"{kind} {value!r} not checked: sacctmgr has no accounting database to ask"
    if value not in shown.split():
        raise ValueError(
            f"{kind} {value!r} is not known to SLURM's accounting (sacctmgr show {kind}); "
            f"pass --{kind} with one of yours (sacctmgr show assoc user=$USER)"
        )
    return None


def dead_slurm_launches(launchpad: LaunchPad, query: dict | None = None) -> list[int] | None:
    """RUNNING launches made by SLURM jobs that are no longer running (cancelled, timed out,
    node failure, out of memory, preempted): each launch runs inside its job's working folder,
    so one outside every running job's folder has lost its job. None where ``squeue`` cannot
    be asked (then only the ping window finds lost runs)."""
    listed = _slurm_query("squeue", "-h", "-t", "R,S,ST,CF", "-o", "%Z")
    if listed is None:
        return None
    alive = [Path(line) for line in listed.splitlines() if line.strip()]
    running = launchpad.launches.find(
        {"state": "RUNNING", "fworker.env.launcher": SLURM_LAUNCHER["launcher"], **(query or {})},
        {"launch_id": 1, "launch_dir": 1},
    )
    return [
        launch["launch_id"]
        for launch in running
        if not any(Path(launch.get("launch_dir") or "/").is_relative_to(job) for job in alive)
    ]


def check_job_script(qadapter_text: str, folder: Path) -> None:
    """Have SLURM judge the job script qlaunch would submit (``sbatch --test-only``) and
    refuse, in one line, one it would reject: qlaunch itself logs sbatch's error and exits 0.
    Nothing is checked where no SLURM cluster answers (no ``sbatch``, or ``sinfo`` fails).
    """
    if shutil.which("sbatch") is None or _slurm_query("sinfo", "-h", "-o", "%P") is None:
        return
    adapter = load_object(yaml.safe_load(qadapter_text))
    with tempfile.TemporaryDirectory(dir=folder) as launch_dir:
        script = Path(launch_dir) / "job.sh"
        script.write_text(adapter.get_script_str(launch_dir))
        try:
            judged = subprocess.run(
                ["sbatch", "--test-only", str(script)], capture_output=True, text=True, timeout=60
            )
        except (subprocess.SubprocessError, OSError):
            return
    if judged.returncode != 0:
        reason = " ".join(judged.stderr.split()) or f"exit status {judged.returncode}"
        raise ValueError(
            f"SLURM would reject the workers' job script (sbatch --test-only: {reason}); "
            "fix --queue, --account, --walltime, --nodes, --ntasks or --cpus-per-task"
        )


def oracle_site_values(settings: Settings) -> dict[str, str]:
    """This site's value of every setting a registered oracle lets workers set (vasp_cmd)."""
    from hullhunter.workflows.oracles import ORACLES  # the oracle list; heavy, so on use

    return {
        name: str(getattr(settings, name))
        for plugin in ORACLES.values()
        for name in plugin.site_settings
    }


def worker_env(values: dict[str, str]) -> str:
    """The fworker's ``env`` mapping as one line of YAML (a JSON object)."""
    return json.dumps(values)


def worker_exports(values: dict[str, str], indent: str = "") -> str:
    """Shell lines exporting ``values`` as HULLHUNTER_* variables, for job scripts."""
    lines = [
        f"export HULLHUNTER_{name.upper()}={shlex.quote(value)}" for name, value in values.items()
    ]
    return f"\n{indent}".join(lines)


def render_slurm_template(name: str, **values: object) -> str:
    """The SLURM template ``slurm/<name>`` with its ``${NAME}`` placeholders filled."""
    template = string.Template((files("hullhunter.slurm") / name).read_text())
    return template.substitute({k: "" if v is None else str(v) for k, v in values.items()})


def write_config(
    settings: Settings | None = None,
    folder: Path | None = None,
    category: str | None = None,
    name: str | None = None,
    queue: QueueSettings | None = None,
    keep_site: bool = False,
) -> dict[str, Path]:
    """Write the FireWorks/jobflow files (and the SLURM adapter); return their paths by role.

    With ``keep_site``, files that exist are kept (the site's queue, account and category
    stay as the user wrote them), except a launchpad or jobflow file that names another
    database, which is brought up to date. With ``queue`` given, the job script is first
    judged by SLURM where it is installed (:func:`check_job_script`).
    """
    settings = settings or get_settings()
    uri = server_uri(settings)
    check_connection(uri, settings.db_timeout_s).close()  # nothing written for a dead URI
    folder = private_folder(Path(folder or config_dir(settings)).expanduser().resolve())
    paths = {
        "launchpad": folder / "my_launchpad.yaml",
        "fworker": folder / "my_fworker.yaml",
        "slurm_fworker": folder / SLURM_FWORKER_FILE,
        "fw_config": folder / "FW_config.yaml",
        "jobflow": folder / "jobflow.yaml",
        "qadapter": folder / "my_qadapter.yaml",
    }
    contents = {
        "launchpad": launchpad_config(uri, settings),
        # A worker killed (walltime, node loss) while it holds a workflow's lock would freeze
        # that workflow for good; with KILL, the next worker takes an expired lock over.
        "fw_config": {
            "CONFIG_FILE_DIR": str(folder),
            "WFLOCK_EXPIRATION_SECS": 300,
            "WFLOCK_EXPIRATION_KILL": True,
            "PING_TIME_SECS": PING_TIME_S,
            "RUN_EXPIRATION_SECS": LOST_AFTER_S,  # `lpad detect_lostruns`' default
        },
        "jobflow": jobflow_config(uri, settings),
    }
    texts = {role: yaml.safe_dump(data, sort_keys=False) for role, data in contents.items()}
    site_values = oracle_site_values(settings)
    for role, env in (("fworker", site_values), ("slurm_fworker", SLURM_LAUNCHER | site_values)):
        texts[role] = render_slurm_template(
            "my_fworker.yaml",
            WORKER_NAME=name or settings.fworker_name,
            CATEGORY=category or settings.fworker_category,
            WORKER_ENV=worker_env(env),
        )
    asked_for_slurm = queue is not None  # `fireworks-config`; `campaign run` passes none
    queue = queue or QueueSettings()
    logs = folder / "logs"
    logs.mkdir(exist_ok=True)
    python_bin = Path(sys.executable).parent
    texts["qadapter"] = render_slurm_template(
        "my_qadapter.yaml",
        RLAUNCH=python_bin / "rlaunch",
        FW_CONFIG_DIR=folder,
        ROCKET_MODE=queue.rlaunch_mode(),
        NODES=queue.nodes,
        NTASKS=queue.ntasks,
        CPUS_PER_TASK=queue.cpus_per_task,
        WALLTIME=queue.walltime,
        QUEUE=queue.queue,
        ACCOUNT=queue.account,
        QOS=queue.qos,
        GRES=None,
        MEM=None,
        JOB_NAME=queue.job_name,
        LOGDIR=logs,
        PYTHON_BIN_DIR=python_bin,
        JOBFLOW_CONFIG_FILE=paths["jobflow"],
        HULLHUNTER_HOME=settings.home,
        WORKER_EXPORTS=worker_exports(site_values, indent="  "),
    )
    if asked_for_slurm and not (keep_site and paths["qadapter"].is_file()):
        check_job_script(texts["qadapter"], folder)  # before anything is written
    for role, text in texts.items():
        if keep_site and paths[role].is_file():
            if role == "fw_config":
                _add_missing_keys(paths[role], contents[role])
            if not _names_another_database(paths[role], role, contents):
                continue
        write_private(paths[role], text)
    return paths


def _add_missing_keys(path: Path, ours: dict) -> None:
    """Give an existing FW_config.yaml the keys hullhunter relies on (ping interval, lock
    expiry) that it lacks, keeping every value already there."""
    try:
        written = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        written = {}
    merged = {**ours, **written}
    if merged.get("ECHO_TEST") == LEGACY_ECHO_TEST:
        del merged["ECHO_TEST"]  # hullhunter's own old value: a bare line before every output
    if merged != written:
        write_private(path, yaml.safe_dump(merged, sort_keys=False))


def _names_another_database(path: Path, role: str, contents: dict) -> bool:
    """True when a launchpad/jobflow file points at another URI than the one in force."""
    if role not in ("launchpad", "jobflow"):
        return False
    try:
        written = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return True
    if role == "launchpad":
        return written.get("host") != contents["launchpad"]["host"]
    stores = (written.get("JOB_STORE") or {}).get("docs_store") or {}
    return stores.get("uri") != contents["jobflow"]["JOB_STORE"]["docs_store"]["uri"]


def get_launchpad(settings: Settings | None = None) -> LaunchPad:
    """A LaunchPad on hullhunter's database, initialised if the database is new."""
    settings = settings or get_settings()
    launchpad = LaunchPad.from_dict(launchpad_config(server_uri(settings), settings))
    if launchpad.fw_id_assigner.find_one() is None and launchpad.fireworks.find_one() is None:
        # a fresh database has no id counters yet; resetting an empty LaunchPad loses nothing,
        # so its alarming "LaunchPad was RESET." line is kept quiet
        level = launchpad.m_logger.level
        launchpad.m_logger.setLevel(logging.WARNING)
        try:
            launchpad.reset("", require_password=False)
        finally:
            launchpad.m_logger.setLevel(level)
    return launchpad


def get_job_store(settings: Settings | None = None) -> JobStore:
    """The jobflow JobStore on hullhunter's database (outputs + GridFS blobs)."""
    settings = settings or get_settings()
    uri = server_uri(settings)
    return JobStore(
        MongoStore(settings.db_name, OUTPUTS_COLLECTION, uri=uri),
        additional_stores={"data": GridFSStore(settings.db_name, BLOBS_COLLECTION, uri=uri)},
    )
