"""Validation a rollup fold does per batch: keyset/shape tables, distributions and gauges."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from tally.aggregator.rows import KIND_DIST, KIND_GAUGE, KIND_SUM
from tally.schemas import sketch
from tally.schemas.limits import MAX_EVENT_TIME, MIN_EVENT_TIME, Limits
from tally.schemas.wire import DistV2, GaugeV2

MEMO_NAMES = 65_536  # names a ``ProblemMemo`` remembers before it starts over


class ProblemMemo(dict[str, str | None]):
    """``check(name)`` per key or path name, computed once per fold (a bounded memo: a record
    of a high-cardinality workload repeats most names of the records before it)."""

    def __init__(self, check: Callable[[str], str | None]) -> None:
        super().__init__()
        self.check = check

    def __missing__(self, name: str) -> str | None:
        if len(self) >= MEMO_NAMES:
            self.clear()
        problem = self[name] = self.check(name)
        return problem


class FoldChecks:
    """The checks of ``PartitionFold`` that read its state (limits, path kinds, shapes)."""

    limits: Limits
    path_kinds: dict[str, int]
    shape_list: list[tuple[str, ...]]
    key_problems: ProblemMemo
    path_problems: ProblemMemo

    def check_tables(
        self, strings: list[str], tables: list[Any], is_keys: bool, allow_empty: bool = False
    ) -> tuple[list[int | str], list[tuple[str, ...]]]:
        """Validate each keyset/shape of a batch: (batch index or rejection reason, names).

        Nothing is interned here: a table enters the fold only when an event folds with it
        (``PartitionFold.intern``), so tables that no event uses are dropped with their record.
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
                problem = next(filter(None, map(self.key_problems.__getitem__, names)), None)
                if len(names) > limits.max_keys:
                    problem = "too_many_keys"
            else:
                problem = next(filter(None, map(self.path_problems.__getitem__, names)), None)
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

    def check_kinds(
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
            path, reason = self.path_of(strings, fields_[0], path_cache)
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
            path, reason = self.path_of(strings, fields_[0], path_cache)
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

    def path_of(
        self, strings: list[str], index: Any, cache: dict[int, tuple[str, str | None]]
    ) -> tuple[str, str | None]:
        """The path at string ``index`` and why it cannot name a distribution or gauge."""
        if type(index) is not int or not 0 <= index < len(strings):
            return "", "bad_reference"
        found = cache.get(index)
        if found is None:
            path = strings[index]
            problem = self.path_problems[path]
            if problem is None and len(path) > self.limits.max_path_length - 7:
                problem = "path_too_long"
            found = cache[index] = (path, problem)
        return found


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
