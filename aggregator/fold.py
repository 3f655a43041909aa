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
from dataclasses import dataclass, field, fields
from typing import Any

import msgspec

from tally.engine.protocols import Rejected
from tally.schemas import sketch
from tally.schemas.limits import MAX_EVENT_TIME, MIN_EVENT_TIME, Limits
from tally.schemas.wire import (
    SCHEMA_VERSIONS,
    BatchDecoder,
    DistV2,
    EventV1,
    EventV2,
    GaugeV2,
    WireError,
)

log = logging.getLogger("tally.aggregator.fold")
EXPIRED_LOG_INTERVAL_S = 60.0


@dataclass(slots=True)
class FoldRows:
    """Column-oriented rows for ``rollups_input``: one per (keys, minute, paths).

    Summed values fill ``keys, minute, paths, values``. Distributions and gauges are rows of
    their own (one per keys, minute and path; ``paths``/``values`` empty) that also fill the
    ``KIND_COLUMNS``; when a flush has any, every row carries all columns (summed rows with
    the defaults), else only the first four are sent, exactly as before.
    """

    keys: list[tuple[str, ...]]
    minute: list[int]
    paths: list[tuple[str, ...]]
    values: list[list[float]]
    kind: list[int] = field(default_factory=list)
    path: list[str] = field(default_factory=list)
    sketch_keys: list[list[int]] = field(default_factory=list)
    sketch_counts: list[list[int]] = field(default_factory=list)
    stats: list[list[float]] = field(default_factory=list)
    vmin: list[float | None] = field(default_factory=list)
    vmax: list[float | None] = field(default_factory=list)
    last: list[tuple[int, float]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.minute)

    @property
    def has_kinds(self) -> bool:
        """True when some row is a distribution or a gauge (all columns are then filled)."""
        return bool(self.kind)

    def column_names(self) -> tuple[str, ...]:
        """The columns this insert sends."""
        return COLUMNS + KIND_COLUMNS if self.has_kinds else COLUMNS

    def columns(self) -> list[list]:
        """Columns in ``column_names()`` order."""
        return [getattr(self, name) for name in self.column_names()]

    def take(self, indices: list[int]) -> FoldRows:
        """The rows at ``indices``, in that order."""
        return FoldRows(
            **{
                f.name: [getattr(self, f.name)[i] for i in indices]
                if (f.name in COLUMNS or self.has_kinds)
                else []
                for f in fields(self)
            }
        )


COLUMNS = ("keys", "minute", "paths", "values")
KIND_COLUMNS = (
    "kind", "path", "sketch_keys", "sketch_counts", "stats", "vmin", "vmax", "last"
)  # fmt: skip
KIND_SUM, KIND_DIST, KIND_GAUGE = 0, 1, 2
DIST_BUCKET_BYTES = 100  # a dict slot with an int key and an int count

# Memory accounting (CPython, 64-bit): an entry is its dict slot, its 3-tuple key and a list of
# ``n`` values, each a pointer plus a number object (a float or an int, up to 24 bytes).
ENTRY_BYTES = 300
VALUE_BYTES = 8 + 24
# An interned keyset/shape: dict slot + tuple, plus its strings (measured with getsizeof).
TABLE_BYTES = 200
POINTER_BYTES = 8


class PartitionFold:
    """The in-memory sums of one partition since its last flush."""

    def __init__(self, limits: Limits, decoder: BatchDecoder) -> None:
        self.limits = limits
        self.decoder = decoder
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

    def __len__(self) -> int:
        return len(self.acc) + len(self.dacc) + len(self.gacc)

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

    def _intern(self, names: tuple[str, ...], is_keys: bool) -> int:
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

    def _check_tables(
        self, strings: list[str], tables: list[Any], is_keys: bool, allow_empty: bool = False
    ) -> tuple[list[int | str], list[tuple[str, ...]]]:
        """Validate each keyset/shape of a batch: (batch index or rejection reason, names).

        Nothing is interned here: a table enters the fold only when an event folds with it
        (``_intern``), so tables that no event uses are dropped with their record.
        """
        limits = self.limits
        out: list[int | str] = []
        names_out: list[tuple[str, ...]] = []
        for index, table in enumerate(tables):
            names_out.append(())
            try:
                names = tuple(strings[i] for i in table if type(i) is int and i >= 0)
                if len(names) != len(table) or not (names or allow_empty):
                    raise IndexError
            except (IndexError, TypeError):
                out.append("bad_reference")
                continue
            if is_keys:
                problem = next(filter(None, map(limits.key_problem, names)), None)
                if len(names) > limits.max_keys:
                    problem = "too_many_keys"
            else:
                problem = next(filter(None, map(limits.path_problem, names)), None)
                if not problem and any(self.path_kinds.get(n, 0) for n in names):
                    problem = "path_kind_conflict"
                if len(names) > limits.max_values:
                    problem = "too_many_values"
            if problem:
                out.append(problem)
                continue
            names_out[index] = names
            out.append(index)
        return out, names_out

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
        ks_ids, ks_names = self._check_tables(strings, keysets, True)
        sh_ids, shape_list = self._check_tables(strings, shapes, False, v2)
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
                kinds, reason = self._check_kinds(strings, ev, shape_list[sh], path_cache)
                if reason is None and not values and not kinds[0] and not kinds[1]:
                    reason = "empty_event"
            if reason is not None:
                rejected.append(Rejected(offset, index, reason, "", _plain(ev)))
                continue
            fks, fsh = ks_fold[ks], sh_fold[sh]
            if fks < 0:
                fks = ks_fold[ks] = self._intern(ks_names[ks], True)
            minute = at - at % 60
            if values:
                if fsh < 0:
                    fsh = sh_fold[sh] = self._intern(shape_list[sh], False)
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
            self._count_expired(stale, reference)
        self.nbytes += added
        return rejected

    def _check_kinds(
        self,
        strings: list[str],
        ev: Any,
        counter_paths: tuple[str, ...],
        path_cache: dict[int, tuple[str, str | None]],
    ) -> tuple[tuple[list, list], str | None]:
        """Validate an event's distributions and gauges: ``((dists, gauges), reason)``.

        Each comes back as a plain tuple with its path resolved. A path may hold one kind in
        a fold: a distribution or gauge at a path already summed (or the other kind) in this
        fold, or twice in one event, is ``path_kind_conflict``.
        """
        dists: list[tuple] = []
        gauges: list[tuple] = []
        raw_d, raw_g = getattr(ev, "dists", []), getattr(ev, "gauges", [])
        if type(raw_d) is not list or type(raw_g) is not list:
            return (dists, gauges), "malformed_event"
        kinds = self.path_kinds
        if not kinds and self.shape_list:  # first kinds in a fold of summed values only
            for names in self.shape_list:
                for name in names:
                    kinds.setdefault(name, KIND_SUM)
        used: list[str] = []
        for d in raw_d:
            fields_ = _fields(d, DistV2, 8)
            if fields_ is None:
                return (dists, gauges), "bad_distribution"
            path, reason = self._path_of(strings, fields_[0], path_cache)
            if reason is None:
                reason = _dist_problem(fields_)
            if reason is None and kinds.get(path, KIND_DIST) != KIND_DIST:
                reason = "path_kind_conflict"
            if reason is not None:
                return (dists, gauges), reason
            used.append(path)
            dists.append((path, *fields_[1:]))
        for g in raw_g:
            if isinstance(g, list) and len(g) == 2:
                return (dists, gauges), "gauge_without_timestamp"
            fields_ = _fields(g, GaugeV2, 3)
            if fields_ is None:
                return (dists, gauges), "bad_gauge"
            path, reason = self._path_of(strings, fields_[0], path_cache)
            value, at_ms = fields_[1], fields_[2]
            if reason is None:
                reason = self.limits.value_problem(value)
            if reason is None and at_ms is None:
                reason = "gauge_without_timestamp"
            elif reason is None and (
                type(at_ms) is not int
                or not MIN_EVENT_TIME * 1000 <= at_ms <= MAX_EVENT_TIME * 1000
            ):
                reason = "bad_gauge_time"
            if reason is None and kinds.get(path, KIND_GAUGE) != KIND_GAUGE:
                reason = "path_kind_conflict"
            if reason is not None:
                return (dists, gauges), reason
            used.append(path)
            gauges.append((path, float(value), at_ms))
        if len(used) > 1 and len(set(used)) != len(used):
            return (dists, gauges), "path_kind_conflict"  # one path twice in one event
        if counter_paths and not set(used).isdisjoint(counter_paths):
            return (dists, gauges), "path_kind_conflict"  # also a summed path of this event
        return (dists, gauges), None

    def _path_of(
        self, strings: list[str], index: Any, cache: dict[int, tuple[str, str | None]]
    ) -> tuple[str, str | None]:
        """The path at string ``index`` and why it cannot name a distribution or gauge."""
        if type(index) is not int or not 0 <= index < len(strings):
            return "", "bad_reference"
        found = cache.get(index)
        if found is None:
            path = strings[index]
            problem = self.limits.path_problem(path)
            if problem is None and len(path) > self.limits.max_path_length - 7:
                problem = "path_too_long"
            found = cache[index] = (path, problem)
        return found

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
            found[0] += count
            found[1] += total
            found[2] += square
            if vmin < found[3]:
                found[3] = vmin
            if vmax > found[4]:
                found[4] = vmax
            buckets = found[5]
            before = len(buckets)
            for k, n in zip(keys, counts, strict=True):
                buckets[k] = buckets.get(k, 0) + n
            added += DIST_BUCKET_BYTES * (len(buckets) - before)
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

    def _count_expired(self, stale: list[int], reference: int) -> None:
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
        """The sums as rows for ``rollups_input``, in fold order (deterministic per range).

        ClickHouse's ``rollups_expand`` view fans them out to every key, stored granularity and
        path in C++, which is where per-row work belongs.
        """
        keysets = self.keyset_list
        shapes = self.shape_list
        rows = FoldRows([], [], [], [])
        for (ks, minute, sh), sums in self.acc.items():
            rows.keys.append(keysets[ks])
            rows.minute.append(minute)
            rows.paths.append(shapes[sh])
            rows.values.append(sums)  # ints and floats: the encoder writes Float64 as is
        if self.dacc or self.gacc:
            n = len(rows)
            rows.kind = [KIND_SUM] * n
            rows.path = [""] * n
            rows.sketch_keys = [[]] * n
            rows.sketch_counts = [[]] * n
            rows.stats = [[]] * n
            rows.vmin = [None] * n
            rows.vmax = [None] * n
            rows.last = [(0, 0.0)] * n
            dacc, gacc = self.dacc, self.gacc
            dkeys = [sorted(e[5]) if len(e[5]) > 1 else list(e[5]) for e in dacc.values()]
            slots = [*dacc, *gacc]
            rows.keys += [keysets[ks] for ks, _, _ in slots]
            rows.minute += [minute for _, minute, _ in slots]
            rows.paths += [()] * len(slots)
            rows.values += [[]] * len(slots)
            rows.kind += [KIND_DIST] * len(dacc) + [KIND_GAUGE] * len(gacc)
            rows.path += [path for _, _, path in slots]
            rows.sketch_keys += dkeys + [[]] * len(gacc)
            rows.sketch_counts += [
                [e[5][k] for k in keys] for e, keys in zip(dacc.values(), dkeys, strict=True)
            ] + [[]] * len(gacc)
            rows.stats += [[float(e[0]), e[1], e[2]] for e in dacc.values()] + [[]] * len(gacc)
            rows.vmin += [e[3] for e in dacc.values()] + [e[1] for e in gacc.values()]
            rows.vmax += [e[4] for e in dacc.values()] + [e[2] for e in gacc.values()]
            rows.last += [(0, 0.0)] * len(dacc) + [e[0] for e in gacc.values()]
        return rows


def _fast_ok(values: list, cap: float) -> bool:
    """True when every value is a finite number within ``cap`` (a cheap sufficient check)."""
    try:
        return sum(map(abs, values)) <= cap
    except TypeError:
        return False


def _fields(entry: Any, struct: type, size: int) -> tuple | None:
    """A dist/gauge entry (a Struct, or a raw list when salvaging) as a tuple, or None."""
    if type(entry) is struct:
        return msgspec.structs.astuple(entry)
    if isinstance(entry, list) and len(entry) == size:
        return tuple(entry)
    return None


def _dist_problem(d: tuple) -> str | None:
    """Why a distribution entry ``(path, count, sum, square, min, max, keys, counts)`` is bad."""
    _, count, total, square, vmin, vmax, keys, counts = d
    if count == 1 and type(count) is int and type(keys) is list and len(keys) == 1:
        # one sample: min = max = sum = the sample, one bucket with count 1
        problem = sketch.sample_problem(vmin)
        if problem:
            return problem
        if vmax != vmin or total != vmin or type(counts) is not list or counts != [1]:
            return sketch.sample_problem(vmax) or "bad_distribution"
        if type(square) not in (int, float) or not 0 <= square < float("inf"):
            return "bad_distribution"
        return sketch.key_problem(keys[0])
    problem = sketch.sample_problem(vmin) or sketch.sample_problem(vmax)
    if problem:
        return problem
    if type(count) is not int or not 1 <= count <= sketch.MAX_SAMPLE or vmin > vmax:
        return "bad_distribution"
    for number in (total, square):
        if type(number) not in (int, float) or not 0 <= number < float("inf"):
            return "bad_distribution"
    if type(keys) is not list or type(counts) is not list or len(keys) != len(counts):
        return "bad_distribution"
    if len(keys) == 1:
        if sketch.key_problem(keys[0]):
            return "bad_sketch_bucket"
    else:
        previous = None
        for k in keys:
            if sketch.key_problem(k) or (previous is not None and k <= previous):
                return "bad_sketch_bucket"
            previous = k
    if any(type(n) is not int or n < 1 for n in counts) or sum(counts) != count:
        return "bad_distribution"
    if keys and (sketch.key_of(vmin) != keys[0] or sketch.key_of(vmax) != keys[-1]):
        return "bad_distribution"
    return None


def _plain(event: Any) -> Any:
    if isinstance(event, EventV1):
        return [event.at, event.keyset, event.shape, event.values]
    if isinstance(event, EventV2):
        return msgspec.to_builtins(event)
    return event
