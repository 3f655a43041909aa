"""Pre-aggregation of one partition's records in memory, with per-event validation.

Events are folded at minute resolution by (keyset, minute, shape): the values of all events
with the same keys, minute and paths are summed element-wise, which is a few list operations
per event. The fan-out to every key, stored granularity (buckets in the configured zone) and
path happens in ClickHouse (``schemas/ddl.py``: ``rollups_input`` -> ``rollups_expand``), so
the aggregator's cost does not grow with fan-out or the number of granularities.
Invalid events are returned as ``Rejected`` and never stop the rest of their record.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgspec
import numpy as np

from tally.aggregator.checks import FoldChecks, ProblemMemo
from tally.aggregator.column_state import ColumnState, absorb
from tally.aggregator.columns import read_columns
from tally.aggregator.fold_bytes import (
    DIST_BUCKET_BYTES,
    ENTRY_BYTES,
    POINTER_BYTES,
    TABLE_BYTES,
    VALUE_BYTES,
)
from tally.aggregator.rows import KIND_DIST, KIND_GAUGE, KIND_SUM, FoldRows, to_rows
from tally.aggregator.sketch_merge import merge_sketch
from tally.aggregator.vfold import fold_columns
from tally.engine.protocols import Rejected
from tally.schemas.limits import Limits
from tally.schemas.wire import (
    SCHEMA_VERSIONS,
    BatchDecoder,
    BatchV3,
    EventV1,
    EventV2,
    WireError,
)
from tally.schemas.wire_columns import events_of

log = logging.getLogger("tally.aggregator.fold")
EXPIRED_LOG_INTERVAL_S = 60.0


class PartitionFold(FoldChecks):
    """The in-memory sums of one partition since its last flush."""

    def __init__(self, limits: Limits, decoder: BatchDecoder, flush_rows: int = 500_000) -> None:
        self.limits = limits
        self.flush_rows = flush_rows  # the engine's row bound: how far ``len`` may run ahead
        self.decoder = decoder
        self.key_problems = ProblemMemo(limits.key_problem)
        self.path_problems = ProblemMemo(limits.path_problem)
        self.acc: dict[tuple[int, int, int], list] = {}
        self.keysets: dict[tuple[str, ...], int] = {}
        self.shapes: dict[tuple[str, ...], int] = {}
        self.keyset_list: list[tuple[str, ...]] = []
        self.shape_list: list[tuple[str, ...]] = []
        self.events = 0
        # Events older than a granularity's TTL on arrival: counted per granularity, passed to
        # ``on_expired`` (the worker wires it to ``tally_expired_on_arrival``) and logged.
        self.expired: Counter[str] = Counter()
        self.on_expired: Callable[[str, int], None] | None = None
        self._expired_logged = 0.0
        self.nbytes = 0  # estimated bytes held: entries, values, interned tables and strings
        # Distributions: (keyset, minute, path) -> [count, sum, square, min, max, {bucket: n}]
        self.dacc: dict[tuple[int, int, str], list] = {}
        # Gauges: (keyset, minute, path) -> [(at_ms, value) of the last reading, min, max]
        self.gacc: dict[tuple[int, int, str], list] = {}
        # What each path is in this fold (summed, distribution, gauge): a path is one kind.
        self.path_kinds: dict[str, int] = {}
        # What version-3 records folded, as arrays (``vfold``, ``column_state``).
        self.cols = ColumnState(flush_rows)
        self._widths = np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self.acc) + len(self.dacc) + len(self.gacc) + self.cols.entries()

    def shape_widths(self) -> np.ndarray:
        """The number of paths of each fold-wide shape, by shape id."""
        if len(self._widths) != len(self.shape_list):
            self._widths = np.fromiter(map(len, self.shape_list), np.int64, len(self.shape_list))
        return self._widths

    def clear(self) -> None:
        """Forget everything folded (after a flush)."""
        self.acc = {}
        self.keysets = {}
        self.shapes = {}
        self.keyset_list = []
        self.shape_list = []
        self.events = 0
        self.nbytes = 0
        self.dacc = {}
        self.gacc = {}
        self.path_kinds = {}
        self.cols = ColumnState(self.flush_rows)
        self._widths = np.zeros(0, np.int64)

    def intern(self, names: tuple[str, ...], is_keys: bool) -> int:
        """The fold-wide id of a keyset/shape used by a folded event (interned on first use)."""
        intern = self.keysets if is_keys else self.shapes
        found = intern.get(names)
        if found is None:
            found = intern[names] = len(intern)
            (self.keyset_list if is_keys else self.shape_list).append(names)
            self.nbytes += TABLE_BYTES + sum(POINTER_BYTES + sys.getsizeof(n) for n in names)
        return found

    def add_record(self, payload: bytes, offset: int, timestamp_ms: int) -> list[Rejected]:
        """Fold one Kafka record; return what was rejected (the rest is folded)."""
        try:
            batch = self.decoder.decode(payload)
        except WireError as exc:
            if exc.reason != "malformed_fields":
                return [Rejected(offset, -1, exc.reason, exc.detail[:500])]
            return self._salvage(payload, offset, timestamp_ms)
        if isinstance(batch, BatchV3):  # also version 4 (narrow columns)
            return self._add_columns(batch, offset, timestamp_ms)
        return self._fold(
            batch.strings,
            batch.keysets,
            batch.shapes,
            batch.events,
            offset,
            timestamp_ms,
            False,
            isinstance(batch.events[0], EventV2) if batch.events else False,
        )

    def _add_columns(self, batch: BatchV3, offset: int, timestamp_ms: int) -> list[Rejected]:
        """Fold a version-3 record with array operations (``vfold``), or event by event.

        The column fold takes a record whose every event is valid and whose paths keep one
        kind each; any other record (an event to reject, a path whose kind depends on event
        order) is folded by ``_fold``, which gives each event its reason in order.
        """
        try:
            columns = read_columns(batch)
        except WireError as exc:
            return [Rejected(offset, -1, exc.reason, exc.detail[:500])]
        if fold_columns(self, batch.strings, batch.keysets, batch.shapes, columns, timestamp_ms):
            return []
        try:
            events = events_of(batch)
        except ValueError as exc:  # read_columns accepted it: a layout both should refuse
            return [Rejected(offset, -1, "malformed_columns", str(exc)[:500])]
        return self._fold(
            batch.strings, batch.keysets, batch.shapes, events, offset, timestamp_ms, False, True
        )

    def _salvage(self, payload: bytes, offset: int, timestamp_ms: int) -> list[Rejected]:
        """Slow path for a batch with some ill-typed field: keep every valid event."""
        try:
            raw = self.decoder.decode_any(payload)
        except WireError as exc:
            return [Rejected(offset, -1, exc.reason, exc.detail[:500])]
        if not (isinstance(raw, list) and len(raw) >= 6 and raw[0] in SCHEMA_VERSIONS):
            return [Rejected(offset, -1, "malformed_batch", "not a version-1 or -2 batch")]
        v2 = raw[0] == 2
        _, _, strings, keysets, shapes, events = raw[:6]
        tables_ok = (
            isinstance(strings, list)
            and all(isinstance(s, str) for s in strings)
            and isinstance(keysets, list)
            and isinstance(shapes, list)
            and isinstance(events, list)
        )
        if not tables_ok:
            return [Rejected(offset, -1, "malformed_batch", "bad string/keyset/shape tables")]
        converted: list[Any] = [
            EventV1(*e)
            if isinstance(e, list) and len(e) == 4 and not v2
            else EventV2(*e)
            if v2 and isinstance(e, list) and 4 <= len(e) <= 6
            else None
            for e in events
        ]
        return self._fold(strings, keysets, shapes, converted, offset, timestamp_ms, True, v2)

    def _fold(
        self,
        strings: list[str],
        keysets: list[Any],
        shapes: list[Any],
        events: list[Any],
        offset: int,
        timestamp_ms: int,
        careful: bool,
        v2: bool = False,
    ) -> list[Rejected]:
        limits = self.limits
        ks_ids, ks_names = self.check_tables(strings, keysets, True)
        sh_ids, shape_list = self.check_tables(strings, shapes, False, v2)
        n_ks, n_sh = len(ks_ids), len(sh_ids)
        ks_fold = [-1] * n_ks  # batch keyset index -> fold id, interned on first use
        sh_fold = [-1] * n_sh
        reference = timestamp_ms // 1000
        lo, hi = limits.time_bounds(reference)
        cap = limits.max_abs_value
        shortest = limits.shortest_ttl()
        oldest_kept = reference - shortest[1] if shortest else None
        stale: list[int] = []
        acc = self.acc
        added = 0
        rejected: list[Rejected] = []
        path_cache: dict[int, tuple[str, str | None]] = {}  # string index -> (path, problem)
        folded = 0
        for index, ev in enumerate(events):
            if ev is None:
                rejected.append(Rejected(offset, index, "malformed_event", "not [at, k, s, v]"))
                continue
            at, ks, sh, values = ev.at, ev.keyset, ev.shape, ev.values
            reason = None
            if type(at) is not int or not lo <= at <= hi:
                reason = limits.time_problem(at, reference)
            elif (
                type(ks) is not int
                or not 0 <= ks < n_ks
                or type(sh) is not int
                or not 0 <= sh < n_sh
            ):
                reason = "bad_reference"
            else:
                ks, sh = ks_ids[ks], sh_ids[sh]
                if type(ks) is str:
                    reason = ks
                elif type(sh) is str:
                    reason = sh
                elif type(values) is not list or len(values) != len(shape_list[sh]):
                    reason = "values_shape_mismatch"
                elif careful or not _fast_ok(values, cap):
                    reason = next(filter(None, map(limits.value_problem, values)), None)
            kinds = None
            if reason is None and v2:
                kinds, reason = self.check_kinds(strings, ev, shape_list[sh], path_cache)
                if reason is None and not values and not kinds[0] and not kinds[1]:
                    reason = "empty_event"
            if reason is not None:
                rejected.append(Rejected(offset, index, reason, "", _plain(ev)))
                continue
            fks, fsh = ks_fold[ks], sh_fold[sh]
            if fks < 0:
                fks = ks_fold[ks] = self.intern(ks_names[ks], True)
            minute = at - at % 60
            if values:
                if fsh < 0:
                    fsh = sh_fold[sh] = self.intern(shape_list[sh], False)
                    if self.path_kinds or v2:
                        for name in shape_list[sh]:
                            self.path_kinds.setdefault(name, KIND_SUM)
                slot = (fks, minute, fsh)
                sums = acc.get(slot)
                if sums is None:
                    acc[slot] = list(values)
                    added += ENTRY_BYTES + VALUE_BYTES * len(values)
                else:
                    acc[slot] = [a + b for a, b in zip(sums, values, strict=True)]
            if kinds is not None:
                added += self._fold_kinds(fks, minute, kinds)
            folded += 1
            if oldest_kept is not None and at < oldest_kept:
                stale.append(at)
        self.events += folded
        if stale:
            self.count_expired(stale, reference)
        self.nbytes += added
        return rejected

    def _fold_kinds(self, fks: int, minute: int, kinds: tuple[list, list]) -> int:
        """Merge an event's (validated) distributions and gauges; returns bytes added."""
        added = 0
        for path, count, total, square, vmin, vmax, keys, counts in kinds[0]:
            self.path_kinds[path] = KIND_DIST
            slot = (fks, minute, path)
            found = self.dacc.get(slot)
            if found is None:  # a new entry takes the event's sketch as is
                buckets = dict(zip(keys, counts, strict=True))
                self.dacc[slot] = [count, total, square, vmin, vmax, buckets]
                added += ENTRY_BYTES + sys.getsizeof(path) + DIST_BUCKET_BYTES * len(keys)
                continue
            found[1] += total
            found[2] += square
            added += merge_sketch(found, count, vmin, vmax, keys, counts)
        for path, value, at_ms in kinds[1]:
            self.path_kinds[path] = KIND_GAUGE
            slot = (fks, minute, path)
            found = self.gacc.get(slot)
            reading = (at_ms, value)
            if found is None:
                self.gacc[slot] = [reading, value, value]
                added += ENTRY_BYTES + sys.getsizeof(path)
            else:
                found[0] = max(found[0], reading)  # last by time; a tie goes to the larger value
                found[1] = min(found[1], value)
                found[2] = max(found[2], value)
        return added

    def count_expired(self, stale: list[int], reference: int) -> None:
        """Count events folded into granularities whose TTL they have already passed."""
        counts: Counter[str] = Counter()
        for at in stale:
            counts.update(self.limits.expired_in(at, reference))
        self.expired.update(counts)
        if self.on_expired is not None:
            for g, n in counts.items():
                self.on_expired(g, n)
        now = time.monotonic()
        if now - self._expired_logged >= EXPIRED_LOG_INTERVAL_S:
            self._expired_logged = now
            log.warning(
                "events older than a granularity's TTL on arrival: ClickHouse drops them there",
                extra={"expired_on_arrival": dict(self.expired)},
            )

    def rows(self) -> FoldRows:
        """The sums as rows for ``rollups_input``: ``rows.to_rows`` of what was folded event
        by event, or the column state's rows (holding what the events folded too, if any)."""
        if not self.cols:
            return to_rows(self.keyset_list, self.shape_list, self.acc, self.dacc, self.gacc)
        if self.acc or self.dacc or self.gacc:  # version-2 and version-3 records in one fold
            absorb(self.cols, self.acc, self.dacc, self.gacc)
            self.acc, self.dacc, self.gacc = {}, {}, {}
        return self.cols.rows(self.keyset_list, self.shape_list, self.shape_widths())


def _fast_ok(values: list, cap: float) -> bool:
    """True when every value is a finite number within ``cap`` (a cheap sufficient check)."""
    try:
        return sum(map(abs, values)) <= cap
    except TypeError:
        return False


def _plain(event: Any) -> Any:
    if isinstance(event, EventV1):
        return [event.at, event.keyset, event.shape, event.values]
    if isinstance(event, EventV2):
        return msgspec.to_builtins(event)
    return event
