"""The thin client facade: ``Tracker.track`` enqueues an event in microseconds.

``track`` validates and flattens on the caller's thread (so a later mutation of the caller's
dict cannot change what was tracked), puts a ``MetricRecord`` into the client outbox and
returns. The outbox's sender thread does the encoding and the network. ``track`` never raises
into the job unless ``strict`` is set; rejected events are counted and logged (rate limited).
"""

from __future__ import annotations

import time
import weakref
from datetime import datetime
from functools import partial

from tally.ingest.codec import MetricCodec
from tally.ingest.flatten import InvalidValues, Kinds
from tally.ingest.outbox import DropMessages, Outbox, OutboxFacade
from tally.ingest.outbox.folding import RecordFolder
from tally.ingest.records import KindsRecord, MetricRecord
from tally.ingest.settings import ClientSettings
from tally.ingest.shapes import ShapeCache
from tally.ingest.sizing import (
    ARRAY,
    EVENT_OVERHEAD,
    RECORD_OVERHEAD,
    strings_bound,
    value_bound,
)
from tally.ingest.text import text_problem
from tally.ingest.track_args import Keys, Values, When

DROPS = DropMessages(
    closed="track() after close(); event dropped (see TrackerStats.dropped_closed)",
    full="buffer full (%d events); event dropped",
)


class Tracker(OutboxFacade[MetricRecord]):
    """Tracks business metrics: ``tracker.track(["calc", f"calc::{tenant}"], {"count": 1})``.

    ``flush``, ``aflush``, ``close`` and ``stats`` are the outbox's (see ``OutboxFacade``).
    """

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self._limits = settings.limits
        self._record_bytes = settings.record_bytes
        self._value_worst = value_bound(self._limits.max_path_length)
        # validated key tuples and shapes -> their size bound in a record
        self._known_keys: dict[tuple[str, ...], int] = {}
        self._known_paths: dict[tuple[str, ...], int] = {}
        self._event_base = 0
        self._flatten = ShapeCache(self._limits).flatten
        ref = weakref.ref(self)  # the outbox must not keep its tracker alive
        folder = RecordFolder(self._limits.max_abs_value) if settings.fold else None
        self.outbox: Outbox[MetricRecord] = Outbox(
            settings,
            partial(MetricCodec, wire_version=settings.wire_version),
            DROPS,
            on_fork=lambda: _size_source(ref),
            fold=folder.fold if folder is not None else None,
        )
        self._counters = self.outbox.counters
        self._put = self.outbox.put
        self._size_source()

    def _size_source(self) -> None:
        """The record bytes every event costs for this process's ``source`` (new after fork)."""
        self._event_base = RECORD_OVERHEAD + EVENT_OVERHEAD + len(self.outbox.source.encode())

    def track(self, keys: Keys, values: Values, at: When = None, route: str | None = None) -> bool:
        """Add ``values`` (nested numbers, summed per bucket) to every key in ``keys``.

        ``at`` defaults to now; ``route`` (default: the last key) picks the Kafka partition, so
        events sharing it are pre-aggregated together. Returns False if the event was rejected
        or dropped (counted in ``stats()``); raises only in strict mode.
        """
        try:
            paths, numbers, kinds = self._flatten(values)
            return self._enqueue(*self._key_tuple(keys), paths, numbers, at, route, None, kinds)
        except Exception as exc:
            return self._rejected(exc)

    def track_flat(
        self,
        keys: Keys,
        paths: tuple[str, ...],
        numbers: list[int | float],
        at: When = None,
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

    def _key_tuple(self, keys: Keys) -> tuple[tuple[str, ...], int]:
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
        at: When,
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
        if kinds is None:
            return self._put(MetricRecord(ts, keys, paths, numbers, route or keys[-1]))
        return self._put(KindsRecord(ts, keys, paths, numbers, route or keys[-1], kinds))

    def _rejected(self, exc: Exception) -> bool:
        """Count (and in strict mode re-raise) a rejected event; never raises otherwise."""
        if isinstance(exc, InvalidValues):
            self._counters.add("too_large" if exc.reason == "event_too_large" else "invalid")
            if self.settings.strict:
                raise exc
            self.outbox.warn("invalid event rejected: %s", exc)
        else:
            self._counters.add("internal_errors")
            if self.settings.strict:
                raise exc
            self.outbox.warn("tally track failed: %r", exc)
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


def _size_source(ref: weakref.ref[Tracker]) -> None:
    tracker = ref()
    if tracker is not None:
        tracker._size_source()
