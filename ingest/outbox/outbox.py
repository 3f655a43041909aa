"""The client outbox: a bounded buffer of typed records, its sender thread and lifecycle.

``put`` appends on the caller's thread and never blocks; the first record in a process
starts the ``Sender`` (which drains, packs, ships and spools with the outbox's codec). The
outbox closes itself at exit (and on SIGTERM when nothing else handles it) and starts over
in a forked child: the parent's buffer, thread and spool lock are the parent's.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import uuid
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic

from tally.ingest.outbox.lifecycle import (
    close_at_exit,
    close_on_sigterm,
    reset_after_fork,
    stop_at_exit,
)
from tally.ingest.outbox.packer import Fold
from tally.ingest.outbox.ratelog import RateLimitedLog
from tally.ingest.outbox.record import R, RecordCodec
from tally.ingest.outbox.sender import Sender
from tally.ingest.settings import ClientSettings
from tally.ingest.stats import Counters, TrackerStats


@dataclass(frozen=True, slots=True)
class DropMessages:
    """What the outbox logs (rate limited) when it drops a record; None: nothing."""

    closed: str | None = None
    full: str = "buffer full (%d records); dropped"


class Outbox(Generic[R]):
    """Buffers records for one topic and ships them with ``codec(source)``.

    ``fold``, when given, folds each packing round's records before they are encoded
    (``folding.py``; the sender thread runs it, never ``put``).
    """

    def __init__(
        self,
        settings: ClientSettings,
        codec: Callable[[str], RecordCodec[R]],
        messages: DropMessages = DropMessages(),
        on_fork: Callable[[], None] | None = None,
        fold: Fold[R] | None = None,
    ) -> None:
        self.settings = settings
        self.buffer: deque[R] = deque()  # shared with the sender thread, which pops from it
        self.counters = Counters()
        self.source = settings.source  # per process: a forked child gets its own
        self.closed = False
        self._codec = codec
        self._fold = fold
        self._messages = messages
        self._on_fork = on_fork
        self._capacity = settings.buffer_events
        self._sender: Sender[R] | None = None
        self._pid = os.getpid()
        self._start_lock = threading.Lock()
        self._log = RateLimitedLog()
        ref = weakref.ref(self)
        atexit.register(close_at_exit, ref)
        os.register_at_fork(after_in_child=lambda: reset_after_fork(ref))
        if settings.spool_dir is not None and any(settings.spool_dir.glob("*/*.rec")):
            self._start_sender()  # records left by an earlier process: deliver them now

    def put(self, record: R) -> bool:
        """Buffer ``record``; False if dropped (closed or buffer full; counted)."""
        if self.closed:
            self.counters.add("dropped_closed")
            if self._messages.closed:
                self.warn(self._messages.closed)
            return False
        if len(self.buffer) >= self._capacity:
            self.counters.add("dropped_overflow")
            self.warn(self._messages.full, self._capacity)
            return False
        self.buffer.append(record)
        if self._sender is None:  # first record in this process (fork resets it)
            self._start_sender()
        return True

    def warn(self, message: str, *args: object) -> None:
        """A warning, at most one per 10 s for this outbox and its facade."""
        self._log(logging.WARNING, message, *args)

    def flush(self, timeout: float = 30.0) -> bool:
        """Block until everything put so far is acknowledged (or spooled); True if done."""
        if self._sender is None:
            return not self.buffer
        try:
            self._sender.request_flush().result(timeout)
            return True
        except Exception:
            return False

    async def aflush(self, timeout: float = 30.0) -> bool:
        """``flush`` for async callers: awaits without blocking the event loop."""
        if self._sender is None:
            return not self.buffer
        try:
            future = asyncio.wrap_future(self._sender.request_flush())
            await asyncio.wait_for(future, timeout)
            return True
        except Exception:
            return False

    def close(self, timeout: float | None = None) -> bool:
        """Flush, stop the sender thread; unsent records are spooled or counted. Idempotent."""
        with self._start_lock:
            self.closed = True
            sender, self._sender = self._sender, None
        if sender is None:
            return True
        return sender.stop(self.settings.close_timeout_s if timeout is None else timeout)

    def stats(self) -> TrackerStats:
        """A snapshot of the counters, plus the current buffer and pending sizes."""
        sender = self._sender
        pending = sender.pending_bytes if sender else 0
        buffered = len(self.buffer)
        return self.counters.snapshot(
            accepted=self.counters.get("drained") + buffered,
            buffered=buffered,
            pending_bytes=pending,
        )

    def after_fork(self) -> None:
        """In a forked child: forget the parent's buffer and thread (the parent sends those).

        The child gets its own ``source`` (and so its own spool directory), a fresh counter
        lock, and lets go of the parent's spool lock it inherited.
        """
        self._pid = os.getpid()
        self.buffer.clear()
        if self._sender is not None:
            self._sender.forget_after_fork()
        self._sender = None
        self._start_lock = threading.Lock()
        self.counters.after_fork()
        self.closed = False
        self.source = f"{self.settings.source}/{self._pid}-{uuid.uuid4().hex[:6]}"
        if self._on_fork is not None:
            self._on_fork()

    def _start_sender(self) -> None:
        with self._start_lock:
            if self._pid != os.getpid():
                self.after_fork()
            if self._sender is None and not self.closed:
                codec = self._codec(self.source)
                sender = Sender(
                    self.settings, self.source, self.buffer, self.counters, codec, self._fold
                )
                self._sender = sender
                # Also when the application drops the outbox: the sender thread lives on.
                atexit.register(
                    stop_at_exit,
                    weakref.ref(self),
                    weakref.ref(sender),
                    self.settings.close_timeout_s,
                )
                if self.settings.flush_on_sigterm:
                    close_on_sigterm(weakref.ref(self))
