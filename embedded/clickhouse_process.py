"""Start and stop the embedded ClickHouse server as a child process.

``start_clickhouse(path)`` runs ``python -m tally.embedded.clickhouse_http`` on ``path``, waits
until it answers ``GET /ping`` and returns an :class:`EmbeddedClickHouse` handle. This module
imports nothing heavy: chDB is loaded only in the child.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tally.embedded.lifecycle import StopsOnExit, terminate

SERVER_MODULE = "tally.embedded.clickhouse_http"
PASSWORD_ENV = "CLICKHOUSE_PASSWORD"
# Loopback only: never route through a proxy from the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class EmbeddedClickHouse(StopsOnExit):
    """A running server process; a context manager that stops it on exit."""

    host: str
    port: int
    pid: int
    path: Path
    _process: subprocess.Popen[bytes] = field(repr=False)
    _scratch: Path = field(repr=False)

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
    user: str | None = None,
    password: str | None = None,
    exit_with_parent: bool = True,
) -> EmbeddedClickHouse:
    """Launch the server on ``path`` and return once ``/ping`` answers ``Ok.``.

    ``exit_with_parent`` makes the server stop by itself when this process dies, so a killed
    test run does not leave the data path locked. The password travels in the child's
    environment, not on its command line.
    """
    path = Path(path).resolve()
    path.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="tally-clickhouse-"))
    ready_file = scratch / "port"
    process = subprocess.Popen(
        _command(path, host, port, ready_file, user, exit_with_parent),
        env=_environment(password),
    )
    try:
        port = _wait_until_ready(process, ready_file, host, timeout)
    except BaseException:
        terminate(process, timeout=5)
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return EmbeddedClickHouse(host, port, process.pid, path, process, scratch)


def _command(
    path: Path, host: str, port: int, ready_file: Path, user: str | None, exit_with_parent: bool
) -> list[str]:
    command = [sys.executable, "-m", SERVER_MODULE, "--path", str(path), "--host", host]
    command += ["--port", str(port), "--ready-file", str(ready_file)]
    if user is not None:
        command += ["--user", user]
    if exit_with_parent:
        command += ["--parent-pid", str(os.getpid())]
    return command


def _environment(password: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != PASSWORD_ENV}
    if password is not None:
        env[PASSWORD_ENV] = password
    return env


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
