"""Process hooks of an outbox: close at exit, close on SIGTERM, start over after fork.

Each hook holds a weak reference, so an outbox the application dropped can be collected.
"""

from __future__ import annotations

import contextlib
import os
import signal
import weakref
from typing import Protocol


class Closable(Protocol):
    """What the hooks need of an outbox."""

    def close(self, timeout: float | None = None) -> bool: ...

    def after_fork(self) -> None: ...


class Stoppable(Protocol):
    """What the exit hook needs of a sender."""

    pid: int

    def stop(self, timeout: float) -> bool: ...


def close_on_sigterm(ref: weakref.ref[Closable]) -> None:
    """Chain a SIGTERM handler that closes the outbox, where SIGTERM would just kill us."""
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL and not getattr(previous, "_tally", False):
        return  # the host (a job framework) handles SIGTERM and exits through atexit

    def handler(signum: int, frame: object) -> None:
        outbox = ref()
        if outbox is not None:
            outbox.close()
        if callable(previous):
            previous(signum, frame)
            return
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    handler._tally = True  # type: ignore[attr-defined]
    with contextlib.suppress(ValueError):  # not the main thread: rely on atexit
        signal.signal(signal.SIGTERM, handler)


def close_at_exit(ref: weakref.ref[Closable]) -> None:
    """At interpreter exit: close the outbox if it is still alive."""
    outbox = ref()
    if outbox is not None:
        outbox.close()


def stop_at_exit(
    outbox: weakref.ref[Closable], ref: weakref.ref[Stoppable], timeout: float
) -> None:
    """Stop a sender whose outbox was garbage collected (a live outbox closes its own)."""
    sender = ref()
    if outbox() is None and sender is not None and sender.pid == os.getpid():
        sender.stop(timeout)


def reset_after_fork(ref: weakref.ref[Closable]) -> None:
    """In a forked child: the outbox starts over."""
    outbox = ref()
    if outbox is not None:
        outbox.after_fork()
