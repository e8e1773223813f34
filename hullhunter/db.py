"""The MongoDB connection every hullhunter process shares.

With no URI configured, hullhunter uses (and starts if needed) its embedded local server,
with the credentials kept beside its data; with ``HULLHUNTER_DB_URI`` set, it talks to that
server and starts nothing.
"""

from __future__ import annotations

import re

import mongoengine
from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import PyMongoError

from hullhunter.server import LocalServer
from hullhunter.settings import Settings, get_settings


class DatabaseError(RuntimeError):
    """MongoDB cannot be reached or used."""


def mask_uri(uri: str) -> str:
    """The URI with any password replaced by ``***``, safe to print."""
    return re.sub(r"(mongodb(?:\+srv)?://[^:/@]+):[^@]*@", r"\1:***@", uri)


def server_uri(settings: Settings | None = None, start: bool = True) -> str:
    """The configured URI, or the embedded server's (started when ``start`` is true)."""
    settings = settings or get_settings()
    if settings.db_uri:
        return settings.db_uri
    server = LocalServer(settings.local_db_dir)
    if start:
        return server.start(port=settings.db_port).uri
    info = server.running()
    if info is None:
        raise DatabaseError(
            f"the embedded MongoDB in {settings.local_db_dir} is not running: "
            "run `hullhunter db start`"
        )
    return info.uri


def check_connection(uri: str, timeout_s: float = 5.0) -> MongoClient:
    """A client that has answered a ping, or a one-line error with the masked URI and cause."""
    client: MongoClient = MongoClient(
        uri, serverSelectionTimeoutMS=int(timeout_s * 1000), tz_aware=True
    )
    try:
        client.admin.command("ping")
    except PyMongoError as exc:
        client.close()
        cause = re.split(r" \(configured timeouts|, Timeout:", str(exc))[0].strip()
        raise DatabaseError(
            f"cannot reach MongoDB at {mask_uri(uri)} within {timeout_s:g} s: {cause}"
        ) from None
    return client


def connect(settings: Settings | None = None, start: bool = True) -> Database:
    """Connect pymongo and mongoengine (alias ``default``) to hullhunter's database."""
    settings = settings or get_settings()
    uri = server_uri(settings, start=start)
    client = check_connection(uri, settings.db_timeout_s)
    mongoengine.disconnect(alias="default")
    mongoengine.connect(
        db=settings.db_name,
        host=uri,
        alias="default",
        serverSelectionTimeoutMS=int(settings.db_timeout_s * 1000),
        tz_aware=True,
        uuidRepresentation="standard",
    )
    return client[settings.db_name]
