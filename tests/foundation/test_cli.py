"""The command line: db lifecycle, FireWorks config that lpad accepts, one-line errors."""

import os
import subprocess
import sys

import yaml
from fireworks import Firework, LaunchPad, ScriptTask


def run(args, env_extra, check=True):
    env = {**os.environ, **env_extra}
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
    run(["fireworks-config", "--category", "cpu"], env)
    folder = tmp_path / "fw_config"
    launchpad = yaml.safe_load((folder / "my_launchpad.yaml").read_text())
    assert launchpad["uri_mode"] is True
    assert launchpad["host"].endswith("/hh_cli_fw")
    assert yaml.safe_load((folder / "my_fworker.yaml").read_text())["category"] == "cpu"
    lpad_env = {**os.environ, "FW_CONFIG_FILE": str(folder / "FW_config.yaml")}
    LaunchPad.from_file(str(folder / "my_launchpad.yaml")).reset("", require_password=False)
    LaunchPad.from_file(str(folder / "my_launchpad.yaml")).add_wf(
        Firework(ScriptTask.from_str("echo hi"), name="hello", spec={"_category": "cpu"})
    )
    listed = subprocess.run(
        ["lpad", "get_fws", "-d", "ids"], capture_output=True, text=True, env=lpad_env, cwd=tmp_path
    )
    assert listed.returncode == 0, listed.stderr
    assert "1" in listed.stdout
    launched = subprocess.run(
        ["rlaunch", "singleshot"], capture_output=True, text=True, env=lpad_env, cwd=tmp_path
    )
    assert launched.returncode == 0, launched.stderr
    state = LaunchPad.from_file(str(folder / "my_launchpad.yaml")).get_fw_by_id(1).state
    assert state == "COMPLETED"
