"""The embedded mongod: start, reuse, clean stop without lost writes, stale state, busy port,
authorisation against other users, the kept port, migration, and a paused server."""

import json
import os
import signal
import socket
import stat
import subprocess
from pathlib import Path

import psutil
import pytest
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from hullhunter.server import LocalServer, ServerError, mongod_binary


@pytest.fixture
def server(tmp_path):
    local = LocalServer(tmp_path / "mongodb")
    yield local
    for pid in _our_mongods(local):  # a test that paused its server leaves it running
        os.kill(pid, signal.SIGCONT)
    local.stop()


def _our_mongods(local):
    state = json.loads(local.state_file.read_text()) if local.state_file.exists() else {}
    return [state["pid"]] if "pid" in state else []


def test_start_twice_reports_the_running_server(server):
    first = server.start()
    second = server.start()
    assert first.started and not second.started
    assert second == first
    version = MongoClient(first.uri).server_info()["version"]
    assert version.startswith("6.0.")


def test_clean_stop_keeps_every_write(server):
    info = server.start()
    client = MongoClient(info.uri)
    client.hh.things.insert_many([{"n": n} for n in range(500)])
    client.close()
    assert server.stop() is True
    assert server.running() is None
    restarted = server.start()
    assert MongoClient(restarted.uri).hh.things.count_documents({}) == 500


def test_sigkill_keeps_every_acknowledged_write(server):
    info = server.start()
    client = MongoClient(info.uri)
    for n in range(2000):
        client.hh.things.insert_one({"n": n})  # each acknowledged before the next
    client.close()
    os.kill(info.pid, signal.SIGKILL)
    psutil.Process(info.pid).wait(timeout=30)  # gone (and reaped: it is this test's child)
    restarted = server.start()
    assert restarted.started and restarted.port == info.port
    assert MongoClient(restarted.uri).hh.things.count_documents({}) == 2000


def test_stale_state_file_is_cleaned_and_data_reused(server):
    info = server.start()
    MongoClient(info.uri).hh.things.insert_one({"kept": True})
    server.stop()
    server.state_file.write_text(json.dumps({"pid": 999_999, "port": 1, "folder": "x"}))
    assert server.running() is None
    assert not server.state_file.exists()
    info = server.start()
    assert MongoClient(info.uri).hh.things.find_one({"kept": True}) is not None


def test_restart_keeps_port_and_credentials_private(server):
    first = server.start()
    server.stop()
    second = server.start()
    assert second.port == first.port
    assert second.password == first.password
    assert stat.S_IMODE(server.access_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(server.folder.stat().st_mode) == 0o700
    assert json.loads(server.access_file.read_text())["port"] == first.port
    unix_socket = Path(f"/tmp/mongodb-{first.port}.sock")  # mongod's own, owner only
    assert stat.S_IMODE(unix_socket.stat().st_mode) == 0o700
    with pytest.raises(OperationFailure, match="requires authentication"):
        MongoClient(first.address).list_database_names()


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another uid needs root")
def test_another_user_is_refused(server):
    info = server.start()
    MongoClient(info.uri).hullhunter.campaigns.insert_one({"name": "mine"})
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # another local user (nobody) tries what a hostile neighbour would
        os.close(read)
        outcome = []
        try:
            os.setgid(65534)
            os.setuid(65534)
            try:
                server.access_file.read_text()
                outcome.append("read access.json")
            except PermissionError:
                outcome.append("no access.json")
            client = MongoClient(info.address, serverSelectionTimeoutMS=3000)
            for attempt in (
                client.list_database_names,
                lambda: client.drop_database("hullhunter"),
            ):
                try:
                    attempt()
                    outcome.append("allowed")
                except OperationFailure as exc:
                    outcome.append(exc.details.get("codeName"))
        except BaseException as exc:  # reported to the parent, never into pytest's own loop
            outcome.append(repr(exc))
        finally:
            os.write(write, json.dumps(outcome).encode())
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        outcome = json.loads(pipe.read())
    os.waitpid(child, 0)
    assert outcome == ["no access.json", "Unauthorized", "Unauthorized"]
    assert MongoClient(info.uri).hullhunter.campaigns.count_documents({}) == 1


def test_unauthenticated_data_folder_is_migrated(server):
    server.data_dir.mkdir(parents=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    old = subprocess.Popen(
        [str(mongod_binary()), "--dbpath", str(server.data_dir), "--port", str(port),
         "--bind_ip", "127.0.0.1", "--logpath", str(server.folder / "old.log")],
    )  # fmt: skip
    client = MongoClient(f"mongodb://127.0.0.1:{port}/", serverSelectionTimeoutMS=20000)
    client.hullhunter.campaigns.insert_many([{"n": n} for n in range(100)])
    client.admin.command("fsync")
    old.terminate()  # clean shutdown on SIGTERM
    assert old.wait(timeout=60) == 0
    info = server.start()
    assert MongoClient(info.uri).hullhunter.campaigns.count_documents({}) == 100
    with pytest.raises(OperationFailure, match="requires authentication"):
        MongoClient(info.address).hullhunter.campaigns.find_one()


def test_paused_server_is_reported_not_forgotten(server):
    info = server.start()
    os.kill(info.pid, signal.SIGSTOP)
    try:
        with pytest.raises(ServerError, match=rf"pid {info.pid}.*paused.*kill -CONT {info.pid}"):
            server.running(timeout_s=0.5)
        assert server.state_file.exists()
        with pytest.raises(ServerError, match="paused"):
            server.stop()
        with pytest.raises(ServerError, match="paused"):
            server.start()
    finally:
        os.kill(info.pid, signal.SIGCONT)
    assert server.running() == info


def test_lost_state_file_is_recovered_from_mongod_lock(server):
    info = server.start()
    server.state_file.unlink()
    assert server.running() == info
    assert server.start().started is False
    assert json.loads(server.state_file.read_text())["pid"] == info.pid


def test_start_failure_shows_mongods_reason(server):
    server.folder.mkdir(parents=True)
    server.log_file.mkdir()  # mongod cannot open its log: it says so on stdout only
    with pytest.raises(ServerError, match=r"exited with code \d+ at start: FileNotOpen: .*log"):
        server.start()


def test_taken_port_is_named(server):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ServerError, match=f"port {port} is taken.*HULLHUNTER_DB_PORT"):
            server.start(port=port)


def test_stop_without_server_says_so(tmp_path):
    assert LocalServer(tmp_path / "never-started").stop() is False
