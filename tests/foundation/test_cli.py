"""The command line: db lifecycle, FireWorks config that lpad accepts, one-line errors."""

import json
import os
import signal
import stat
import subprocess
import sys
import time
from subprocess import PIPE
from urllib.parse import urlsplit

import yaml
from fireworks import Firework, LaunchPad, ScriptTask
from pymongo import MongoClient


def run(args, env_extra, check=True):
    # no SLURM cluster for these (the local one may run): its checks are tests/slurm's
    env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"} | env_extra
    result = subprocess.run(
        [sys.executable, "-m", "hullhunter", *args], capture_output=True, text=True, env=env
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_version_and_help(tmp_path):
    env = {"HULLHUNTER_HOME": str(tmp_path)}
    assert run(["--version"], env).stdout.startswith("hullhunter ")
    help_text = run(["--help"], env).stdout
    assert "db" in help_text and "fireworks-config" in help_text


def test_db_start_status_stop(tmp_path):
    env = {"HULLHUNTER_HOME": str(tmp_path)}
    try:
        assert "started" in run(["db", "start"], env).stdout
        assert "already running" in run(["db", "start"], env).stdout
        status = run(["db", "status"], env).stdout
        assert "MongoDB 6.0." in status
        assert "embedded" in status
    finally:
        assert "stopped" in run(["db", "stop"], env).stdout
    failed = run(["db", "status"], env, check=False)
    assert failed.returncode == 1
    assert failed.stderr.startswith("error: the embedded MongoDB")
    assert "Traceback" not in failed.stderr


def test_bad_setting_is_one_line_and_debug_shows_traceback(tmp_path):
    env = {"HULLHUNTER_HOME": str(tmp_path), "HULLHUNTER_DB_URI": "localhost"}
    failed = run(["db", "status"], env, check=False)
    assert failed.returncode == 1
    assert failed.stderr.strip().count("\n") == 0
    assert "HULLHUNTER_DB_URI" in failed.stderr
    debug = run(["--debug", "db", "status"], env, check=False)
    assert "Traceback" in debug.stderr


def test_fireworks_config_drives_stock_lpad(tmp_path, mongo_uri):
    env = {
        "HULLHUNTER_HOME": str(tmp_path),
        "HULLHUNTER_DB_URI": mongo_uri,
        "HULLHUNTER_DB_NAME": "hh_cli_fw",
    }
    configured = run(["fireworks-config", "--category", "cpu"], env)
    assert "RESET" not in configured.stdout + configured.stderr  # a new database, set up quietly
    folder = tmp_path / "fw_config"
    launchpad = yaml.safe_load((folder / "my_launchpad.yaml").read_text())
    assert launchpad["uri_mode"] is True
    assert urlsplit(launchpad["host"]).path == "/hh_cli_fw"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for written in folder.glob("*.yaml"):  # they hold the password
        assert stat.S_IMODE(written.stat().st_mode) == 0o600, written
    assert yaml.safe_load((folder / "my_fworker.yaml").read_text())["category"] == "cpu"
    lpad_env = {**os.environ, "FW_CONFIG_FILE": str(folder / "FW_config.yaml")}
    LaunchPad.from_file(str(folder / "my_launchpad.yaml")).reset("", require_password=False)
    LaunchPad.from_file(str(folder / "my_launchpad.yaml")).add_wf(
        Firework(ScriptTask.from_str("echo hi"), name="hello", spec={"_category": "cpu"})
    )
    listed = subprocess.run(
        ["lpad", "get_fws", "-d", "more"],
        capture_output=True,
        text=True,
        env=lpad_env,
        cwd=tmp_path,
    )
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["name"] == "hello"  # nothing but JSON: pipes into tools
    launched = subprocess.run(
        ["rlaunch", "singleshot"], capture_output=True, text=True, env=lpad_env, cwd=tmp_path
    )
    assert launched.returncode == 0, launched.stderr
    state = LaunchPad.from_file(str(folder / "my_launchpad.yaml")).get_fw_by_id(1).state
    assert state == "COMPLETED"


def test_concurrent_starts_make_one_server(tmp_path):
    env = {**os.environ, "HULLHUNTER_HOME": str(tmp_path)}
    command = [sys.executable, "-m", "hullhunter", "db", "start"]
    try:
        starts = [
            subprocess.Popen(command, env=env, stdout=PIPE, stderr=PIPE, text=True)
            for _ in range(2)
        ]
        outputs = [start.communicate(timeout=120) for start in starts]
        assert [start.returncode for start in starts] == [0, 0], outputs
        firsts = sorted(out.split(":")[0] for out, _ in outputs)
        assert firsts == ["MongoDB already running", "MongoDB started"], outputs
    finally:
        run(["db", "stop"], {"HULLHUNTER_HOME": str(tmp_path)})


def test_fireworks_config_checks_the_server_before_writing(tmp_path):
    env = {
        "HULLHUNTER_HOME": str(tmp_path),
        "HULLHUNTER_DB_URI": "mongodb://alice:secret@127.0.0.1:9/",
        "HULLHUNTER_DB_TIMEOUT_S": "1",
    }
    start = time.monotonic()
    failed = run(["fireworks-config", "--queue", "gpuq"], env, check=False)
    assert time.monotonic() - start < 20
    assert failed.returncode == 1
    assert failed.stderr.count("\n") == 1
    assert failed.stderr.startswith("error: cannot reach MongoDB at mongodb://alice:***@")
    assert "secret" not in failed.stderr
    assert not (tmp_path / "fw_config").exists()


def test_system_and_database_errors_are_one_line(tmp_path, mongo_uri):
    (tmp_path / "file").write_text("")
    failed = run(["db", "start"], {"HULLHUNTER_HOME": str(tmp_path / "file" / "home")}, False)
    assert failed.returncode == 1
    assert failed.stderr.count("\n") == 1
    assert failed.stderr.startswith("error: Not a directory: ")
    assert "check that the path exists" in failed.stderr

    admin = MongoClient(mongo_uri)
    admin.hh_cli_ro.campaigns.insert_one({"name": "ro", "config": {}, "status": "running"})
    admin.admin.command(
        "createUser", "reader", pwd="pw", roles=[{"role": "read", "db": "hh_cli_ro"}]
    )
    try:
        port = urlsplit(mongo_uri).port
        env = {
            "HULLHUNTER_HOME": str(tmp_path),
            "HULLHUNTER_DB_URI": f"mongodb://reader:pw@127.0.0.1:{port}/?authSource=admin",
            "HULLHUNTER_DB_NAME": "hh_cli_ro",
        }
        failed = run(["campaign", "pause", "ro"], env, check=False)  # a write, refused
        assert failed.returncode == 1
        assert failed.stderr.count("\n") == 1, failed.stderr
        assert failed.stderr.startswith("error: MongoDB failed: ")
        assert "not authorized" in failed.stderr and "OperationFailure" in failed.stderr
    finally:
        admin.admin.command("dropUser", "reader")
        admin.drop_database("hh_cli_ro")
        admin.close()


def test_campaign_run_keeps_the_sites_worker_files(hh_settings, tmp_path, monkeypatch):
    """`campaign run` rewrites nothing `fireworks-config` wrote for the site."""
    from hullhunter.fireworks_config import QueueSettings, write_config

    monkeypatch.delenv("SLURM_CONF", raising=False)  # a site's partition, not the local one

    folder = tmp_path / "fw"
    site = QueueSettings(queue="gpuq", account="mat123", walltime="02:00:00")
    paths = write_config(hh_settings, folder=folder, category="gpu", queue=site)
    paths["launchpad"].write_text("host: mongodb://127.0.0.1:1/gone\nname: x\nuri_mode: true\n")
    paths["fw_config"].write_text(f"CONFIG_FILE_DIR: {folder}\nQUEUE_UPDATE_INTERVAL: 2\n")
    write_config(hh_settings, folder=folder, keep_site=True)  # what `campaign run` does
    qadapter = yaml.safe_load(paths["qadapter"].read_text())
    assert (qadapter["queue"], qadapter["account"], qadapter["walltime"]) == (
        "gpuq",
        "mat123",
        "02:00:00",
    )
    assert yaml.safe_load(paths["fworker"].read_text())["category"] == "gpu"
    fw_config = yaml.safe_load(paths["fw_config"].read_text())  # the site's key stays,
    assert fw_config["QUEUE_UPDATE_INTERVAL"] == 2  # the one-minute ping is added
    assert fw_config["PING_TIME_SECS"] == 60
    launchpad = yaml.safe_load(paths["launchpad"].read_text())  # it named a dead server
    assert launchpad["host"].startswith(hh_settings.db_uri.split("?")[0].rstrip("/"))


def test_paused_server_is_reported_in_one_line_and_kept(tmp_path):
    env = {"HULLHUNTER_HOME": str(tmp_path)}
    run(["db", "start"], env)
    state = tmp_path / "mongodb" / "server.json"
    pid = json.loads(state.read_text())["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        failed = run(["db", "status"], env, check=False)  # `db start`/`stop` share the probe
        assert failed.returncode == 1
        assert failed.stderr.count("\n") == 1, failed.stderr
        assert f"kill -CONT {pid}" in failed.stderr
        assert state.exists()
    finally:
        os.kill(pid, signal.SIGCONT)
    assert "MongoDB 6.0." in run(["db", "status"], env).stdout
    assert "stopped" in run(["db", "stop"], env).stdout


def test_campaign_run_says_the_embedded_server_keeps_running(tmp_path, monkeypatch, capsys):
    from hullhunter import cli
    from hullhunter.settings import get_settings

    env = {"HULLHUNTER_HOME": str(tmp_path)}
    run(["db", "start"], env)
    monkeypatch.setenv("HULLHUNTER_HOME", str(tmp_path))
    monkeypatch.delenv("HULLHUNTER_DB_URI", raising=False)
    get_settings.cache_clear()
    try:
        cli._say_where_the_database_runs()  # how `campaign run` ends
        said = " ".join(capsys.readouterr().out.split())
        assert "the embedded MongoDB keeps running" in said and "hullhunter db stop" in said
    finally:
        run(["db", "stop"], env)
        get_settings.cache_clear()
    cli._say_where_the_database_runs()
    assert capsys.readouterr().out == ""  # stopped: nothing to say
