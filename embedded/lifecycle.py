"""Shared lifecycle of the local processes: ``with`` support and terminate-then-kill."""

from __future__ import annotations

import signal
import subprocess
from typing import Any, Self


class StopsOnExit:
    """Mixin: ``with thing:`` calls ``thing.stop()`` on the way out."""

    def stop(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def terminate(process: subprocess.Popen, timeout: float) -> int:
    """SIGTERM ``process``, SIGKILL it after ``timeout`` seconds; returns its exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()
