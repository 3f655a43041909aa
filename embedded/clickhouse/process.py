"""Start and stop the embedded ClickHouse server as a child process.

``start_clickhouse(path)`` runs ``python -m tally.embedded.clickhouse`` on ``path``, waits
until it answers ``GET /ping`` and returns an :class:`EmbeddedClickHouse` handle whose ``user``
and ``password`` every client must present. The password is generated at the data dir's first
start and kept in ``<path>/secrets/clickhouse-password`` (see ``secret``). The child
gets a minimal environment (:data:`CHILD_ENVIRONMENT`): no secret of the launcher reaches it.
This module imports nothing heavy: chDB is loaded only in the child.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tally.embedded.clickhouse.access import password_file
from tally.embedded.clickhouse.secret import ensure_password
from tally.embedded.lifecycle import StopsOnExit, terminate
from tally.schemas.access import AccessModel

SERVER_MODULE = "tally.embedded.clickhouse"
# The only variables the server process inherits.
CHILD_ENVIRONMENT = ("PATH", "HOME", "LANG", "TZ", "PYTHONPATH")
# Loopback only: never route through a proxy from the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class EmbeddedClickHouse(StopsOnExit):
    """A running server process; a context manager that stops it on exit."""

    host: str
    port: int
    pid: int
    path: Path
    user: str
    password: str = field(repr=False)
    _process: subprocess.Popen[bytes] = field(repr=False)
    _scratch: Path = field(repr=False)
    # component -> (user, password) of the declared component users (``access``)
    logins: Mapping[str, tuple[str, str]] = field(default_factory=dict, repr=False)

    def login(self, component: str) -> tuple[str, str]:
        """User and password of ``component`` (``aggregator``, ``api``, ``sql``, ...)."""
        return self.logins[component]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def is_running(self) -> bool:
        return self._process.poll() is None

    def stop(self, timeout: float = 10) -> int:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; returns the exit code."""
        shutil.rmtree(self._scratch, ignore_errors=True)
        return terminate(self._process, timeout)


def start_clickhouse(
    path: Path,
    port: int = 0,
    timeout: float = 60,
    *,
    host: str = "127.0.0.1",
    user: str = "default",
    password: str | None = None,
    allow_remote: bool = False,
    server_args: Sequence[str] = (),
    exit_with_parent: bool = True,
    access: AccessModel | None = None,
) -> EmbeddedClickHouse:
    """Launch the server on ``path`` and return once ``/ping`` answers ``Ok.``.

    ``password`` replaces the data dir's stored one; by default the stored one is used (generated
    at the first start). A ``host`` other than loopback needs ``allow_remote=True``.
    ``server_args`` are extra flags of the server (``--max-sessions 10``).
    ``exit_with_parent`` makes the server stop by itself when this process dies, so a killed
    test run does not leave the data path locked. ``access`` declares one user per component
    (``tally.schemas.access``); their passwords are generated into the data dir at first start
    and returned in ``logins``.
    """
    if not (is_loopback(host) or allow_remote):
        raise ValueError(f"{host} is not a loopback address: pass allow_remote=True to expose it")
    path = Path(path).resolve()
    path.mkdir(parents=True, exist_ok=True)
    password = ensure_password(path, password)
    scratch = Path(tempfile.mkdtemp(prefix="tally-clickhouse-"))
    ready_file = scratch / "port"
    command = _command(path, host, port, ready_file, user, exit_with_parent)
    if allow_remote:
        command.append("--allow-remote")
    logins: dict[str, tuple[str, str]] = {}
    if access is not None:
        access_file = scratch / "access.json"
        access_file.write_text(access.to_json())
        command += ["--access-file", str(access_file)]
        for u in access.users:
            secret = ensure_password(path, name=password_file(u.component))
            logins[u.component] = (u.name, secret)
    process = subprocess.Popen([*command, *server_args], env=child_environment())
    try:
        port = _wait_until_ready(process, ready_file, host, timeout)
    except BaseException:
        terminate(process, timeout=5)
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return EmbeddedClickHouse(
        host, port, process.pid, path, user, password, process, scratch, logins
    )


def _command(
    path: Path, host: str, port: int, ready_file: Path, user: str, exit_with_parent: bool
) -> list[str]:
    command = [sys.executable, "-m", SERVER_MODULE, "--path", str(path), "--host", host]
    command += ["--port", str(port), "--ready-file", str(ready_file), "--user", user]
    if exit_with_parent:
        command += ["--parent-pid", str(os.getpid())]
    return command


def child_environment(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The launcher's PATH, HOME, LANG, TZ and PYTHONPATH (those set), and nothing else."""
    return {name: environ[name] for name in CHILD_ENVIRONMENT if name in environ}


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _wait_until_ready(
    process: subprocess.Popen[bytes], ready_file: Path, host: str, timeout: float
) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            raise RuntimeError(f"embedded ClickHouse exited with code {code} before it was ready")
        if ready_file.exists():
            port = int(ready_file.read_text())
            if ping(host, port):
                return port
        time.sleep(0.05)
    raise TimeoutError(f"embedded ClickHouse was not ready within {timeout} s")


def ping(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when ``GET /ping`` answers ``Ok.``."""
    try:
        with _DIRECT.open(f"http://{host}:{port}/ping", timeout=timeout) as response:
            return response.read() == b"Ok.\n"
    except (urllib.error.URLError, OSError):
        return False
