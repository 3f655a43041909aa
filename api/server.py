"""Serve the app with uvicorn, on 127.0.0.1 unless configured otherwise."""

from __future__ import annotations

import errno
import socket
import threading
from collections.abc import Sequence

import uvicorn
from litestar.types import ControllerRouterHandler

from tally.api.app import create_app
from tally.api.settings import ApiSettings


class PortInUse(RuntimeError):
    """The API's port is taken."""


def check_port(host: str, port: int) -> None:
    """Raise :class:`PortInUse` with a clear message if ``host:port`` cannot be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(f"{host}:{port} is already in use") from exc
            raise


def server(settings: ApiSettings, extra: Sequence[ControllerRouterHandler] = ()) -> uvicorn.Server:
    """A uvicorn server for the app (not started)."""
    config = uvicorn.Config(
        create_app(settings, extra),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        server_header=False,
    )
    return uvicorn.Server(config)


class ServerThread:
    """The API on a background thread (tests, ``tally up``); ``stop()`` shuts it down."""

    def __init__(
        self, settings: ApiSettings, extra: Sequence[ControllerRouterHandler] = ()
    ) -> None:
        check_port(settings.host, settings.port)
        self.server = server(settings, extra)
        self.thread = threading.Thread(target=self.server.run, name="tally-api", daemon=True)

    def start(self, timeout: float = 30) -> ServerThread:
        """Start and wait until it accepts connections."""
        import time

        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 10) -> None:
        """Ask uvicorn to exit and wait for it."""
        self.server.should_exit = True
        self.thread.join(timeout)
