"""A throwaway ``redis-server`` on a free 127.0.0.1 port, for the job-framework tests.

``start_redis(workdir)`` launches the Debian ``redis-server`` binary with persistence off,
waits until it answers ``PING`` and returns an :class:`EmbeddedRedis`; ``stop()`` ends it.
On Linux the server also dies with the process that started it.
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tally.embedded.kafka_node import free_ports
from tally.embedded.lifecycle import StopsOnExit, terminate

_PR_SET_PDEATHSIG = 1


class RedisServerError(RuntimeError):
    """redis-server is missing, did not start, or did not answer in time."""


@dataclass
class EmbeddedRedis(StopsOnExit):
    """A running redis-server; a context manager that stops it on exit."""

    url: str
    port: int
    workdir: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10) -> int:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; returns the exit code."""
        return terminate(self.process, timeout)


def start_redis(workdir: Path, timeout: float = 10, attempts: int = 3) -> EmbeddedRedis:
    """Start redis-server in ``workdir`` on a free port; retried if the port was taken."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisServerError("redis-server not found (Debian: apt-get install redis-server)")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    error = ""
    for _ in range(attempts):
        port = free_ports(1)[0]
        log = workdir / f"redis-{port}.log"
        process = subprocess.Popen(
            _command(binary, port, workdir, log),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        if _wait_ready(process, port, timeout):
            return EmbeddedRedis(f"redis://127.0.0.1:{port}", port, workdir, process)
        with contextlib.suppress(Exception):
            process.kill()
        process.wait()
        error = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise RedisServerError(f"redis-server did not start:\n{error}")


def _command(binary: str, port: int, workdir: Path, log: Path) -> list[str]:
    return [
        binary,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(workdir),
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
        "--logfile", str(log),
    ]  # fmt: skip


def _ping(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")
    return False


def _wait_ready(process: subprocess.Popen[bytes], port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if _ping(port):
            return True
        time.sleep(0.02)
    return False


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the parent dies (Linux prctl)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
