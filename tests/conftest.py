"""Suite-wide fixtures: a real mongod for the session, isolated settings and databases."""

from __future__ import annotations

import os
import platform
import uuid
from collections.abc import Iterator
from pathlib import Path

import mongoengine
import pytest
from pymongo import MongoClient

from hullhunter.server import LocalServer
from hullhunter.settings import get_settings


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """No test reads or writes the user's ~/.hullhunter or config file."""
    home = tmp_path_factory.mktemp("hullhunter-home")
    saved = {key: os.environ.get(key) for key in ("HULLHUNTER_HOME", "HULLHUNTER_CONFIG")}
    os.environ["HULLHUNTER_HOME"] = str(home)
    os.environ.pop("HULLHUNTER_CONFIG", None)
    get_settings.cache_clear()
    yield home
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URI of a real mongod (the project's own launcher) running for the test session."""
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        pytest.skip("the embedded mongod exists for Linux x86-64 only")
    server = LocalServer(tmp_path_factory.mktemp("mongod"))
    info = server.start()
    yield info.uri
    server.stop()


@pytest.fixture
def hh_settings(mongo_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Settings pointing at the session mongod, a fresh database and a temp home."""
    db_name = f"hh_test_{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("HULLHUNTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HULLHUNTER_DB_URI", mongo_uri)
    monkeypatch.setenv("HULLHUNTER_DB_NAME", db_name)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()
    client = MongoClient(mongo_uri)
    client.drop_database(db_name)
    client.close()


@pytest.fixture
def database(hh_settings):
    """pymongo database with mongoengine connected to it (alias 'default')."""
    from hullhunter.db import connect

    db = connect(hh_settings)
    yield db
    mongoengine.disconnect(alias="default")
