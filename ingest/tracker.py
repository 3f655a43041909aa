"""The thin client facade: ``Tracker.track`` enqueues an event in microseconds.

``track`` validates and flattens on the caller's thread (so a later mutation of the caller's
dict cannot change what was tracked), appends to a bounded in-memory buffer and returns. A
background ``Sender`` thread does the encoding and the network. ``track`` never raises into
the job unless ``strict`` is set; rejected events are counted and logged (rate limited).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import signal
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import datetime

from tally.ingest.codec import RecordCodec
from tally.ingest.flatten import InvalidValues, Kinds, flatten_all
from tally.ingest.sender import Sender
from tally.ingest.settings import ClientSettings
from tally.ingest.sizing import (
    ARRAY,
    EVENT_OVERHEAD,
    RECORD_OVERHEAD,
    strings_bound,
    value_bound,
)
from tally.ingest.stats import Counters, TrackerStats
from tally.ingest.text import text_problem

log = logging.getLogger("tally.ingest")


class Tracker:
    """Tracks business metrics: ``tracker.track(["calc", f"calc::{tenant}"], {"count": 1})``."""

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self._limits = settings.limits
        self._capacity = settings.buffer_events
        self._buffer: deque = deque()
        self._counters = Counters()
        self._sender: Sender | None = None
        self._pid = os.getpid()
        self._start_lock = threading.Lock()
        self._closed = False
        self._last_warning = 0.0
        self._source = settings.source
        self._record_bytes = settings.record_bytes
        self._event_base = RECORD_OVERHEAD + EVENT_OVERHEAD + len(self._source.encode())
        self._value_worst = value_bound(self._limits.max_path_length)
        # validated key tuples and shapes -> their size bound in a record
        self._known_keys: dict[tuple[str, ...], int] = {}
        self._known_paths: dict[tuple[str, ...], int] = {}
        ref = weakref.ref(self)
        atexit.register(_close_at_exit, ref)
        os.register_at_fork(after_in_child=lambda: _reset_after_fork(ref))
        if settings.spool_dir is not None and any(settings.spool_dir.glob("*/*.rec")):
            self._start_sender()  # records left by an earlier process: deliver them now

    def track(
        self,
        keys: str | Iterable[str],
        values: Mapping[str, object],
        at: datetime | float | None = None,
        route: str | None = None,
    ) -> bool:
        """Add ``values`` (nested numbers, summed per bucket) to every key in ``keys``.

        ``at`` defaults to now; ``route`` (default: the last key) picks the Kafka partition, so
        events sharing it are pre-aggregated together. Returns False if the event was rejected
        or dropped (counted in ``stats()``); raises only in strict mode.
        """
        try:
            paths, numbers, kinds = flatten_all(values, self._limits)
            return self._enqueue(*self._key_tuple(keys), paths, numbers, at, route, None, kinds)
        except Exception as exc:
            return self._rejected(exc)

    def track_flat(
        self,
        keys: str | Iterable[str],
        paths: tuple[str, ...],
        numbers: list[int | float],
        at: datetime | float | None = None,
        route: str | None = None,
        kinds: Kinds | None = None,
    ) -> bool:
        """``track`` with values already flattened: ``numbers[i]`` belongs to ``paths[i]``.

        For instrumentation that emits the same shapes over and over: each distinct ``paths``
        tuple is validated once (the result is cached), numbers are checked on every call.
        ``kinds`` are distributions and gauges as ``flatten_all`` returns them (validated
        there); their paths are checked like ``paths``.
        """
        try:
            size = self._known_paths.get(paths)
            if size is None:
                size = self._check_paths(paths)
            if len(numbers) != len(paths):
                raise InvalidValues("values_shape_mismatch", f"{len(numbers)} != {len(paths)}")
            limit = self._limits.max_abs_value
            for number in numbers:
                kind = type(number)
                if (kind is not int and kind is not float) or not -limit <= number <= limit:
                    raise InvalidValues(self._limits.value_problem(number) or "bad_value", "")
            if kinds is not None:
                self._check_kind_paths(kinds)
            return self._enqueue(
                *self._key_tuple(keys), paths, list(numbers), at, route, size, kinds
            )
        except Exception as exc:
            return self._rejected(exc)

    def _check_kind_paths(self, kinds: Kinds) -> None:
        names = tuple(p for p, _ in kinds[0]) + tuple(g[0] for g in kinds[1])
        if names not in self._known_paths:
            self._check_paths(names)
            short = self._limits.max_path_length - 7  # room for ".square"
            if any(len(p) > short for p in names):
                del self._known_paths[names]
                raise InvalidValues("path_too_long", "a distribution path")

    def _key_tuple(self, keys: str | Iterable[str]) -> tuple[tuple[str, ...], int]:
        """The keys as a validated tuple, and their size bound in a record."""
        key_tuple = (keys,) if type(keys) is str else tuple(keys)
        size = self._known_keys.get(key_tuple)
        if size is None:
            size = self._check_keys(key_tuple)
        return key_tuple, size

    def _enqueue(
        self,
        keys: tuple[str, ...],
        keys_size: int,
        paths: tuple[str, ...],
        numbers: list[int | float],
        at: datetime | float | None,
        route: str | None,
        paths_size: int | None,
        kinds: Kinds | None = None,
    ) -> bool:
        ts = int(time.time()) if at is None else _to_seconds(at)
        if route is not None and (type(route) is not str or text_problem(route)):
            raise InvalidValues("bad_route", repr(route)[:80])
        # Cheap bound first (every path at its longest); the exact bound only for wide events.
        size = self._event_base + keys_size + ARRAY + len(numbers) * self._value_worst
        if kinds is not None:
            size += _kinds_bound(kinds, self._value_worst)
        if size > self._record_bytes:
            if paths_size is None:
                paths_size = strings_bound(paths)
            size = self._event_base + keys_size + paths_size + 9 * len(numbers)
            if kinds is not None:
                size += _kinds_bound(kinds, self._value_worst)
            if size > self._record_bytes:
                raise InvalidValues("event_too_large", f"~{size} bytes > record_bytes")
        if self._closed:
            self._counters.add("dropped_closed")
            self._warn("track() after close(); event dropped (see TrackerStats.dropped_closed)")
            return False
        if len(self._buffer) >= self._capacity:
            self._counters.add("dropped_overflow")
            self._warn("buffer full (%d events); event dropped", self._capacity)
            return False
        if kinds is None:
            self._buffer.append((ts, keys, paths, numbers, route or keys[-1]))
        else:
            self._buffer.append((ts, keys, paths, numbers, kinds, route or keys[-1]))
        if self._sender is None:  # first event in this process (fork resets it)
            self._start_sender()
        return True

    def _rejected(self, exc: Exception) -> bool:
        """Count (and in strict mode re-raise) a rejected event; never raises otherwise."""
        if isinstance(exc, InvalidValues):
            self._counters.add("too_large" if exc.reason == "event_too_large" else "invalid")
            if self.settings.strict:
                raise exc
            self._warn("invalid event rejected: %s", exc)
        else:
            self._counters.add("internal_errors")
            if self.settings.strict:
                raise exc
            self._warn("tally track failed: %r", exc)
        return False

    def _check_paths(self, paths: tuple[str, ...]) -> int:
        """Validate a flattened shape once; valid ones are remembered (bounded) with their size."""
        if type(paths) is not tuple or not paths or len(paths) > self._limits.max_values:
            raise InvalidValues("bad_paths", f"{type(paths).__name__} of {len(paths)} paths")
        for path in paths:
            problem = self._limits.path_problem(path) or text_problem(path)
            if problem:
                raise InvalidValues(problem, repr(path)[:80])
        if len(self._known_paths) >= 10_000:
            self._known_paths.clear()
        size = self._known_paths[paths] = strings_bound(paths)
        return size

    def _check_keys(self, keys: tuple[str, ...]) -> int:
        """Validate a key tuple once; valid ones are remembered (bounded) to skip the check."""
        if not keys or len(keys) > self._limits.max_keys:
            raise InvalidValues("bad_keys", f"{len(keys)} keys")
        for key in keys:
            problem = self._limits.key_problem(key) or text_problem(key)
            if problem:
                raise InvalidValues(problem, repr(key)[:80])
        if len(self._known_keys) >= 10_000:
            self._known_keys.clear()
        size = self._known_keys[keys] = strings_bound(keys)
        return size

    def flush(self, timeout: float = 30.0) -> bool:
        """Block until everything tracked so far is acknowledged (or spooled); True if done."""
        if self._sender is None:
            return not self._buffer
        try:
            self._sender.request_flush().result(timeout)
            return True
        except Exception:
            return False

    async def aflush(self, timeout: float = 30.0) -> bool:
        """``flush`` for async callers: awaits without blocking the event loop."""
        if self._sender is None:
            return not self._buffer
        try:
            future = asyncio.wrap_future(self._sender.request_flush())
            await asyncio.wait_for(future, timeout)
            return True
        except Exception:
            return False

    def close(self, timeout: float | None = None) -> bool:
        """Flush, stop the sender thread; unsent records are spooled or counted. Idempotent."""
        with self._start_lock:
            self._closed = True
            sender, self._sender = self._sender, None
        if sender is None:
            return True
        return sender.stop(self.settings.close_timeout_s if timeout is None else timeout)

    def stats(self) -> TrackerStats:
        """A snapshot of the counters, plus the current buffer and pending sizes."""
        sender = self._sender
        pending = sender.pending_bytes if sender else 0
        drained = self._counters.get("drained")
        return self._counters.snapshot(
            accepted=drained + len(self._buffer),
            buffered=len(self._buffer),
            pending_bytes=pending,
        )

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start_sender(self) -> None:
        with self._start_lock:
            if self._pid != os.getpid():
                self._after_fork()
            if self._sender is None and not self._closed:
                sender = Sender(
                    self.settings, self._source, self._buffer, self._counters, self._codec()
                )
                self._sender = sender
                # Also when the application drops the tracker: the sender thread lives on.
                atexit.register(
                    _stop_at_exit,
                    weakref.ref(self),
                    weakref.ref(sender),
                    self.settings.close_timeout_s,
                )
                if self.settings.flush_on_sigterm:
                    _close_on_sigterm(weakref.ref(self))

    def _codec(self) -> RecordCodec | None:
        """The record codec of this tracker's topic (None: the metrics' ``BatchV1``)."""
        return None

    def _after_fork(self) -> None:
        """In a forked child: forget the parent's buffer and thread (the parent sends those).

        The child gets its own ``source`` (and so its own spool directory), a fresh counter
        lock, and lets go of the parent's spool lock it inherited.
        """
        self._pid = os.getpid()
        self._buffer.clear()
        if self._sender is not None:
            self._sender.forget_after_fork()
        self._sender = None
        self._start_lock = threading.Lock()
        self._counters.after_fork()
        self._closed = False
        self._source = f"{self.settings.source}/{self._pid}-{uuid.uuid4().hex[:6]}"
        self._event_base = RECORD_OVERHEAD + EVENT_OVERHEAD + len(self._source.encode())

    def _warn(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last_warning > 10:
            self._last_warning = now
            log.warning(message, *args)


def _kinds_bound(kinds: Kinds, per_path: int) -> int:
    """Bytes the distributions and gauges of one event can cost in a record."""
    dists, gauges = kinds
    size = 2 * ARRAY + len(gauges) * (per_path + ARRAY + 18)
    for _, d in dists:
        size += per_path + 2 * ARRAY + 6 * 9 + 12 * len(d.buckets)
    return size


def _to_seconds(at: datetime | float) -> int:
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise InvalidValues("naive_datetime", "pass an aware datetime or unix seconds")
        return int(at.timestamp())
    if type(at) is bool or not isinstance(at, int | float):
        raise InvalidValues("bad_timestamp", repr(at)[:40])
    return int(at)


def _close_on_sigterm(ref: weakref.ref[Tracker]) -> None:
    """Chain a SIGTERM handler that closes the tracker, where SIGTERM would just kill us."""
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL and not getattr(previous, "_tally", False):
        return  # the host (a job framework) handles SIGTERM and exits through atexit

    def handler(signum: int, frame: object) -> None:
        tracker = ref()
        if tracker is not None:
            tracker.close()
        if callable(previous):
            previous(signum, frame)
            return
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    handler._tally = True  # type: ignore[attr-defined]
    with contextlib.suppress(ValueError):  # not the main thread: rely on atexit
        signal.signal(signal.SIGTERM, handler)


def _close_at_exit(ref: weakref.ref[Tracker]) -> None:
    tracker = ref()
    if tracker is not None:
        tracker.close()


def _stop_at_exit(tracker: weakref.ref[Tracker], ref: weakref.ref[Sender], timeout: float) -> None:
    """Stop a sender whose tracker was garbage collected (a live tracker closes its own)."""
    sender = ref()
    if tracker() is None and sender is not None and sender.pid == os.getpid():
        sender.stop(timeout)


def _reset_after_fork(ref: weakref.ref[Tracker]) -> None:
    tracker = ref()
    if tracker is not None:
        tracker._after_fork()
