"""Running the server: open chDB, listen, write the ready file, stop on SIGTERM/SIGINT (or
the parent's death) after the requests in flight."""

from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

from tally.embedded.clickhouse.auth import Credentials
from tally.embedded.clickhouse.engine import ChdbEngine
from tally.embedded.clickhouse.handler import ClickHouseHTTPServer, ServerState
from tally.embedded.clickhouse.limits import DEFAULT_LIMITS, Limits

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerConfig:
    """Built once from the command line."""

    path: Path
    credentials: Credentials
    host: str = "127.0.0.1"
    port: int = 0
    ready_file: Path | None = None
    parent_pid: int | None = None
    drain_timeout: float = 30.0
    limits: Limits = DEFAULT_LIMITS


def serve(config: ServerConfig) -> int:
    """Serve until SIGTERM/SIGINT (or the parent's death); returns the exit code."""
    try:
        engine = ChdbEngine.open(config.path, limits=config.limits)
    except (RuntimeError, ValueError) as exc:
        log.error("cannot open chDB data path %s: %s", config.path, exc)
        return 1
    state = ServerState(engine, config.credentials)
    try:
        server = ClickHouseHTTPServer((config.host, config.port), state)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", config.host, config.port, exc)
        engine.close()
        return 1
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    threading.Thread(
        target=server.serve_forever, args=(0.1,), name="clickhouse-http", daemon=True
    ).start()
    port = server.server_address[1]
    if config.ready_file is not None:
        write_ready_file(config.ready_file, port)
    log.info(
        "embedded ClickHouse %s (chDB) serving %s on http://%s:%d (pid %d)",
        engine.version, config.path, config.host, port, os.getpid(),
    )  # fmt: skip
    _wait_for_stop(stop, config.parent_pid)
    _shut_down(server, state, config)
    return 0


def _wait_for_stop(stop: threading.Event, parent_pid: int | None) -> None:
    while not stop.wait(0.5):
        if parent_pid is not None and os.getppid() != parent_pid:
            log.warning("parent process %d is gone; stopping", parent_pid)
            return


def _shut_down(server: ClickHouseHTTPServer, state: ServerState, config: ServerConfig) -> None:
    """Stop accepting, let in-flight requests finish, then close chDB."""
    server.shutdown()
    if not state.inflight.close_and_wait(config.drain_timeout):
        log.warning("requests still running after %.0f s; closing anyway", config.drain_timeout)
    state.engine.close()
    server.server_close()
    if config.ready_file is not None:
        config.ready_file.unlink(missing_ok=True)
    log.info("embedded ClickHouse stopped")


def write_ready_file(path: Path, port: int) -> None:
    """Write the port atomically, so a reader never sees a partial file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{port}\n")
    os.replace(tmp, path)
