"""The key index rows of a flush (``keys_seen``, ``key_paths``), minus what was already written.

The aggregator knows each flush's keys, minutes and paths, so it writes the key index itself
instead of having ClickHouse fan every ``rollups_input`` block out to (key, day) and
(key, path) in two more materialized views. Both tables keep ``min``/``max`` only, so writing a
fact again (a replayed flush, a restart that forgot what it wrote) changes nothing: the memory
of written facts only saves work, and it forgets everything once it holds ``capacity`` entries.

The facts are those the views produced: per (key, UTC day) the first and last minute, per
(key, path) the last minute; a distribution at ``P`` lists ``P``, ``P.count``, ``P.sum`` and
``P.square``, a gauge ``P``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tally.aggregator.rows import KIND_DIST, FoldRows

DAY_S = 86400
DEFAULT_CAPACITY = 200_000
DIST_SUFFIXES = ("", ".count", ".sum", ".square")
DAY_COLUMNS = ("key", "day", "first_seen", "last_seen")
DAY_TYPES = ("String", "Date", "DateTime('UTC')", "DateTime('UTC')")
PATH_COLUMNS = ("key", "path", "last_seen")
PATH_TYPES = ("String", "String", "DateTime('UTC')")


@dataclass(slots=True)
class KeyIndexRows:
    """Rows for ``keys_seen`` (``days``: key, day, first, last) and ``key_paths`` (``paths``:
    key, path, last), one per key and day or path, and the (keyset, ...) facts they cover
    (for ``remember``)."""

    days: list[tuple[str, int, int, int]] = field(default_factory=list)
    paths: list[tuple[str, str, int]] = field(default_factory=list)
    day_facts: dict[tuple[tuple[str, ...], int], tuple[int, int]] = field(default_factory=dict)
    path_facts: dict[tuple[tuple[str, ...], tuple[str, ...]], int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.days or self.paths)

    def day_columns(self) -> list[list]:
        return [list(c) for c in zip(*self.days, strict=True)] if self.days else [[]] * 4

    def path_columns(self) -> list[list]:
        return [list(c) for c in zip(*self.paths, strict=True)] if self.paths else [[]] * 3


class WrittenKeys:
    """What the key index already holds, as far as this process wrote it (bounded)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._days: dict[tuple[tuple[str, ...], int], tuple[int, int]] = {}
        self._paths: dict[tuple[tuple[str, ...], tuple[str, ...]], int] = {}

    def __len__(self) -> int:
        return len(self._days) + len(self._paths)

    def new_rows(self, rows: FoldRows) -> KeyIndexRows:
        """The key index rows ``rows`` add to what was written (nothing when all are known).

        Work is per (keyset, day) and (keyset, path set) first, so a flush whose keysets and
        shapes are all known costs one dict lookup per row.
        """
        day_facts: dict[tuple[tuple[str, ...], int], tuple[int, int]] = {}
        path_facts: dict[tuple[tuple[str, ...], tuple[str, ...]], int] = {}
        kinds = rows.kind if rows.has_kinds else None
        columns = zip(rows.keys, rows.minute, rows.paths, strict=True)
        for i, (keys, minute, paths) in enumerate(columns):
            if type(keys) is not tuple:
                keys = tuple(keys)
            if type(paths) is not tuple:
                paths = tuple(paths)
            day = (keys, minute // DAY_S)
            span = day_facts.get(day)
            if span is None:
                day_facts[day] = (minute, minute)
            elif minute < span[0] or minute > span[1]:
                day_facts[day] = (min(span[0], minute), max(span[1], minute))
            if kinds is not None and kinds[i]:
                p = rows.path[i]
                paths = tuple(p + s for s in DIST_SUFFIXES) if kinds[i] == KIND_DIST else (p,)
            if paths:
                shape = (keys, paths)
                if path_facts.get(shape, -1) < minute:
                    path_facts[shape] = minute
        out = KeyIndexRows()
        days: dict[tuple[str, int], tuple[int, int]] = {}
        for fact, (first, last) in day_facts.items():
            known = self._days.get(fact)
            if known is not None and known[0] <= first and known[1] >= last:
                continue
            out.day_facts[fact] = (first, last) if known is None else _union(known, first, last)
            keys, day = fact
            for key in keys:
                span = days.get((key, day))
                days[(key, day)] = (first, last) if span is None else _union(span, first, last)
        # Many keysets share a key (the job's own key is in all of them): merge per key, by
        # path set, before expanding into (key, path).
        by_key: dict[str, dict[tuple[str, ...], int]] = {}
        for fact, last in path_facts.items():
            known_last = self._paths.get(fact)
            if known_last is not None and known_last >= last:
                continue
            out.path_facts[fact] = last
            keys, paths = fact
            for key in keys:
                shapes = by_key.get(key)
                if shapes is None:
                    by_key[key] = {paths: last}
                elif shapes.get(paths, -1) < last:
                    shapes[paths] = last
        out.days = [(k, d, f, la) for (k, d), (f, la) in days.items()]
        for key, shapes in by_key.items():
            if len(shapes) == 1:
                ((paths, last),) = shapes.items()
                out.paths.extend((key, p, last) for p in paths)
                continue
            merged: dict[str, int] = {}
            for paths, last in shapes.items():
                for p in paths:
                    if merged.get(p, -1) < last:
                        merged[p] = last
            out.paths.extend((key, p, la) for p, la in merged.items())
        return out

    def remember(self, written: KeyIndexRows) -> None:
        """Record what ClickHouse acknowledged; forget everything past ``capacity`` facts."""
        if len(self) + len(written.day_facts) + len(written.path_facts) > self.capacity:
            self._days.clear()
            self._paths.clear()
        self._days.update(written.day_facts)
        self._paths.update(written.path_facts)


def _union(span: tuple[int, int], first: int, last: int) -> tuple[int, int]:
    return (min(span[0], first), max(span[1], last))
