"""The embedded mongod: start, reuse, clean stop without lost writes, stale state, busy port."""

import json
import socket

import pytest
from pymongo import MongoClient

from hullhunter.server import LocalServer, ServerError


@pytest.fixture
def server(tmp_path):
    local = LocalServer(tmp_path / "mongodb")
    yield local
    local.stop()


def test_start_twice_reports_the_running_server(server):
    first = server.start()
    second = server.start()
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


def test_stale_state_file_is_cleaned_and_data_reused(server):
    info = server.start()
    MongoClient(info.uri).hh.things.insert_one({"kept": True})
    server.stop()
    server.state_file.write_text(json.dumps({"pid": 999_999, "port": 1, "folder": "x"}))
    assert server.running() is None
    assert not server.state_file.exists()
    info = server.start()
    assert MongoClient(info.uri).hh.things.find_one({"kept": True}) is not None


def test_taken_port_is_named(server):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ServerError, match=f"port {port} is taken.*HULLHUNTER_DB_PORT=0"):
            server.start(port=port)


def test_stop_without_server_says_so(tmp_path):
    assert LocalServer(tmp_path / "never-started").stop() is False
