"""The column fold's state: what wire-v3/v4 records folded, as typed arrays reduced with numpy.

A screened record (``vfold``) appends a few arrays per kind and nothing per event or group:

- sums: one row per event with values (fold-wide keyset id, minute, fold-wide shape id, where
  its values start) and the values themselves, one flat float64 array;
- distributions: one row per distribution (keyset, minute, path id, count, sum, square, min,
  max) and one per sketch bucket (keyset, minute, path id, key, count);
- gauges: one row per reading (keyset, minute, path id, at_ms, value, min, max).

When a kind's pending rows outnumber its reduced groups by its slack (a sixteenth of the
engine's ``--flush-rows``, at least ``SLACK_ROWS``: so ``entries()``, what that bound reads,
stays within twice the rows a flush would make plus a fifth of the bound), when
all pending rows reach ``PENDING_ROWS``, and in ``rows()``, the pending kinds are reduced: rows are
sorted by their group key (one int64 composite key when the ids fit 63 bits, else
``lexsort``) and summed with ``np.add.reduceat`` (summed values: per shape, as an events x
paths matrix along its first axis; min/max with ``minimum``/``maximum``;
gauges keep the last reading by ``(at_ms, value)``), so what is held shrinks to one row per
group. Python objects are made only in ``rows()``, one per output row and value. Sums are float64
added in sort order: they equal the event fold's exactly while values and partial sums are
integers below 2**53 (beyond that ClickHouse's Float64 columns are not exact either), and
agree to rounding otherwise. ``nbytes`` is the bytes of every array held plus what ``rows()``
would make of them in Python objects (``fold_bytes``: an entry per row, a number per value; per
pending row, as if each were a group of its own), so ``--max-fold-mb`` bounds the flush too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np

from tally.aggregator.fold_bytes import DIST_BUCKET_BYTES, ENTRY_BYTES, VALUE_BYTES
from tally.aggregator.rows import KIND_DIST, KIND_GAUGE, KIND_SUM, FoldRows

PENDING_ROWS = 1 << 18  # rows appended before a reduce (about 8 MiB of pending arrays)
SLACK_ROWS = 16  # the least pending rows a kind may hold beyond its groups before a reduce
KEY_SHIFT = 1 << 15  # sketch keys plus this are non-negative (``sketch`` keys fit 16 bits)

Arrays = tuple[np.ndarray, ...]


@dataclass(slots=True)
class Table:
    """Rows of one kind: the reduced rows (one per group) and the parts appended since."""

    row_bytes: int  # what one row makes in ``rows()`` (Python objects)
    reduced: Arrays = ()
    pending: list[Arrays] = field(default_factory=list)
    pending_rows: int = 0
    groups: int = 0  # groups among the reduced rows
    nbytes: int = 0

    def append(self, columns: Arrays) -> None:
        self.pending.append(columns)
        self.pending_rows += len(columns[0])
        self.nbytes += sum(c.nbytes for c in columns) + self.row_bytes * len(columns[0])

    def gather(self) -> Arrays:
        """Every row held (reduced first), one array per column."""
        parts = ([self.reduced] if self.reduced else []) + self.pending
        if len(parts) == 1:
            return parts[0]
        return tuple(np.concatenate(cols) for cols in zip(*parts, strict=True))

    def replace(self, reduced: Arrays, groups: int) -> None:
        self.reduced, self.pending, self.pending_rows, self.groups = reduced, [], 0, groups
        self.nbytes = sum(c.nbytes for c in reduced) + self.row_bytes * len(reduced[0])


@dataclass(slots=True)
class SumTable:
    """Summed values: one row per event (pending) or per group (reduced), as ``(keyset,
    minute, shape, start)`` columns and one flat array of values (a row's are
    ``values[start : start + width of its shape]``)."""

    reduced: Arrays = ()
    pending: list[Arrays] = field(default_factory=list)
    pending_rows: int = 0
    groups: int = 0
    nbytes: int = 0

    def append(self, columns: Arrays) -> None:
        self.pending.append(columns)
        self.pending_rows += len(columns[0])
        self.nbytes += _sum_bytes(columns)

    def gather(self) -> Arrays:
        parts = ([self.reduced] if self.reduced else []) + self.pending
        if len(parts) == 1:
            return parts[0]
        shift = np.cumsum([0] + [len(p[4]) for p in parts[:-1]])
        return (
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]),
            np.concatenate([p[3] + d for p, d in zip(parts, shift.tolist(), strict=True)]),
            np.concatenate([p[4] for p in parts]),
        )

    def replace(self, reduced: Arrays) -> None:
        self.reduced, self.pending, self.pending_rows = reduced, [], 0
        self.groups = len(reduced[0])
        self.nbytes = _sum_bytes(reduced)

    def reduce(self, shape_widths: np.ndarray) -> None:
        """One row per (keyset, minute, shape), sorted by shape, keyset and minute."""
        ks, minute, shape, start, values = self.gather()
        order, starts = sort_groups((shape, ks, _minute_index(minute)))
        first = order[starts]
        g_shape = shape[first]
        g_width = shape_widths[g_shape]
        event_start = start[order]
        groups, events = len(starts), len(order)
        blocks = np.flatnonzero(np.concatenate(([True], g_shape[1:] != g_shape[:-1])))
        bounds = [*blocks.tolist(), groups]
        group_at = [*starts.tolist(), events]
        sums = []
        for a, b in pairwise(bounds):  # one shape (one width) at a time
            w = int(g_width[a])
            e0, e1 = group_at[a], group_at[b]
            block = values[event_start[e0:e1, None] + np.arange(w)]  # events x paths
            sums.append(np.add.reduceat(block, starts[a:b] - e0, axis=0).ravel())
        new_start = np.zeros(groups, np.int64)
        np.cumsum(g_width[:-1], out=new_start[1:])
        self.replace((ks[first], minute[first], g_shape, new_start, np.concatenate(sums)))


def _sum_bytes(columns: Arrays) -> int:
    """Summed rows' arrays, and their objects in ``rows()``: an entry a row, a number a value."""
    return (
        sum(c.nbytes for c in columns)
        + ENTRY_BYTES * len(columns[0])
        + VALUE_BYTES * len(columns[4])
    )


def sort_groups(keys: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The order that sorts rows by ``keys`` (non-negative ints, most significant first) and
    where each distinct key starts in that order."""
    n = len(keys[0])
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    bits = [int(k.max()).bit_length() for k in keys]
    if sum(bits) <= 63:
        composite = keys[0].astype(np.int64)
        for k, b in zip(keys[1:], bits[1:], strict=True):
            composite <<= b
            composite |= k
        order = np.argsort(composite)  # any order within a group: sums are commutative
        ordered = composite[order]
        change = ordered[1:] != ordered[:-1]
    else:
        order = np.lexsort(tuple(reversed(keys)))
        change = np.zeros(n - 1, bool)
        for k in keys:
            ordered = k[order]
            change |= ordered[1:] != ordered[:-1]
    return order, np.flatnonzero(np.concatenate(([True], change)))


def _minute_index(minute: np.ndarray) -> np.ndarray:
    return (minute - minute.min()) // 60


class ColumnState:
    """Sums, distributions and gauges of the column fold (see the module docstring)."""

    def __init__(self, flush_rows: int = 500_000) -> None:
        self.slack = max(SLACK_ROWS, flush_rows // 16)
        self.sums = SumTable()  # ks, minute, shape, start; values
        # ks, minute, path, count, sum, square, min, max
        self.dists = Table(ENTRY_BYTES + 5 * VALUE_BYTES)
        self.buckets = Table(DIST_BUCKET_BYTES)  # ks, minute, path, key, count
        self.gauges = Table(
            ENTRY_BYTES + 3 * VALUE_BYTES
        )  # ks, minute, path, at_ms, value, min, max
        self.paths: dict[str, int] = {}  # distribution and gauge paths: fold-wide ids
        self.path_list: list[str] = []

    @property
    def tables(self) -> tuple[SumTable, Table, Table, Table]:
        return self.sums, self.dists, self.buckets, self.gauges

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tables)

    @property
    def pending_rows(self) -> int:
        return sum(t.pending_rows for t in self.tables)

    def entries(self) -> int:
        """Rows a flush would insert, at most (reduced groups plus every pending row)."""
        s, d, g = self.sums, self.dists, self.gauges
        return s.groups + s.pending_rows + d.groups + d.pending_rows + g.groups + g.pending_rows

    def __bool__(self) -> bool:
        return any(t.reduced or t.pending for t in self.tables)

    def path_id(self, path: str) -> int:
        """The fold-wide id of a distribution or gauge path."""
        found = self.paths.get(path)
        if found is None:
            found = self.paths[path] = len(self.path_list)
            self.path_list.append(path)
        return found

    def reduce(self, shape_widths: np.ndarray) -> None:
        """One row per group in every table (``shape_widths``: each fold-wide shape's width)."""
        if self.sums.pending:
            self.sums.reduce(shape_widths)
        if self.dists.pending:
            self._reduce_dists()
        if self.buckets.pending:
            self._reduce_buckets()
        if self.gauges.pending:
            self._reduce_gauges()

    def settle(self, shape_widths: np.ndarray, pending_bound: int = PENDING_ROWS) -> None:
        """Reduce what holds too many pending rows: every kind past ``pending_bound`` rows in
        all, else each kind whose pending rows exceed its groups by ``slack`` (doubling: the
        reduce work stays linear in the rows appended)."""
        if self.pending_rows >= pending_bound:
            self.reduce(shape_widths)
            return
        s, d, g, slack = self.sums, self.dists, self.gauges, self.slack
        if s.pending_rows > s.groups + slack:
            s.reduce(shape_widths)
        if d.pending_rows > d.groups + slack:
            self._reduce_dists()
            self._reduce_buckets()
        if g.pending_rows > g.groups + slack:
            self._reduce_gauges()

    def _reduce_dists(self) -> None:
        ks, minute, path, count, total, square, low, high = self.dists.gather()
        order, starts = sort_groups((ks, _minute_index(minute), path))
        first = order[starts]
        reduced = (
            ks[first], minute[first], path[first],
            np.add.reduceat(count[order], starts), np.add.reduceat(total[order], starts),
            np.add.reduceat(square[order], starts), np.minimum.reduceat(low[order], starts),
            np.maximum.reduceat(high[order], starts),
        )  # fmt: skip
        self.dists.replace(reduced, len(starts))

    def _reduce_buckets(self) -> None:
        ks, minute, path, key, count = self.buckets.gather()
        order, starts = sort_groups((ks, _minute_index(minute), path, key + KEY_SHIFT))
        first = order[starts]
        reduced = (ks[first], minute[first], path[first], key[first])
        self.buckets.replace((*reduced, np.add.reduceat(count[order], starts)), len(starts))

    def _reduce_gauges(self) -> None:
        ks, minute, path, at_ms, value, low, high = self.gauges.gather()
        order, starts = sort_groups((ks, _minute_index(minute), path))
        group = np.empty(len(order), np.int64)
        group[order] = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(order))))
        last_first = np.lexsort((value, at_ms, group))  # by group, then (at_ms, value)
        ends = np.append(starts[1:], len(order)) - 1
        last = last_first[ends]
        first = order[starts]
        reduced = (
            ks[first], minute[first], path[first], at_ms[last], value[last],
            np.minimum.reduceat(low[order], starts), np.maximum.reduceat(high[order], starts),
        )  # fmt: skip
        self.gauges.replace(reduced, len(starts))

    def rows(
        self,
        keysets: list[tuple[str, ...]],
        shapes: list[tuple[str, ...]],
        shape_widths: np.ndarray,
    ) -> FoldRows:
        """Every group as a row of ``rollups_input`` (sums, then distributions, then gauges),
        in key order: deterministic for the same records."""
        self.reduce(shape_widths)
        out = FoldRows([], [], [], [])
        if self.sums.reduced:
            ks, minute, shape, start, value = self.sums.reduced
            values = value.tolist()
            ends = [*start[1:].tolist(), len(values)]
            out.keys = list(map(keysets.__getitem__, ks.tolist()))
            out.minute = minute.tolist()
            out.paths = list(map(shapes.__getitem__, shape.tolist()))
            out.values = list(map(values.__getitem__, map(slice, start.tolist(), ends)))
        if not (self.dists.reduced or self.gauges.reduced):
            return out
        n = len(out)
        out.kind = [KIND_SUM] * n
        out.path = [""] * n
        out.sketch_keys = [[]] * n
        out.sketch_counts = [[]] * n
        out.stats = [[]] * n
        out.vmin = [None] * n
        out.vmax = [None] * n
        out.last = [(0, 0.0)] * n
        paths = self.path_list
        if self.dists.reduced:
            ks, minute, path, count, total, square, low, high = self.dists.reduced
            bks, bminute, bpath, bkey, bcount = self.buckets.reduced
            # buckets are sorted by (keyset, minute, path, key): each group's are one run
            bstarts = np.flatnonzero(
                np.concatenate(
                    ([True], (bks[1:] != bks[:-1]) | (bminute[1:] != bminute[:-1])
                     | (bpath[1:] != bpath[:-1]))
                )
            )  # fmt: skip
            keys_l, counts_l = bkey.tolist(), bcount.tolist()
            bb = [*bstarts.tolist(), len(keys_l)]
            out.keys += [keysets[k] for k in ks.tolist()]
            out.minute += minute.tolist()
            out.paths += [()] * len(ks)
            out.values += [[]] * len(ks)
            out.kind += [KIND_DIST] * len(ks)
            out.path += [paths[p] for p in path.tolist()]
            out.sketch_keys += [keys_l[a:b] for a, b in pairwise(bb)]
            out.sketch_counts += [counts_l[a:b] for a, b in pairwise(bb)]
            out.stats += [
                [float(c), s, q]
                for c, s, q in zip(count.tolist(), total.tolist(), square.tolist(), strict=True)
            ]
            out.vmin += low.tolist()
            out.vmax += high.tolist()
            out.last += [(0, 0.0)] * len(ks)
        if self.gauges.reduced:
            ks, minute, path, at_ms, value, low, high = self.gauges.reduced
            out.keys += [keysets[k] for k in ks.tolist()]
            out.minute += minute.tolist()
            out.paths += [()] * len(ks)
            out.values += [[]] * len(ks)
            out.kind += [KIND_GAUGE] * len(ks)
            out.path += [paths[p] for p in path.tolist()]
            out.sketch_keys += [[]] * len(ks)
            out.sketch_counts += [[]] * len(ks)
            out.stats += [[]] * len(ks)
            out.vmin += low.tolist()
            out.vmax += high.tolist()
            out.last += list(zip(at_ms.tolist(), value.tolist(), strict=True))
        return out


def absorb(
    state: ColumnState,
    acc: dict[tuple[int, int, int], list],
    dacc: dict[tuple[int, int, str], list],
    gacc: dict[tuple[int, int, str], list],
) -> None:
    """Append what the event-by-event fold holds (``PartitionFold.acc``, ``dacc``, ``gacc``)
    to ``state``, so a fold of version-2 and version-3 records has one set of rows. Python
    work per entry: it runs once per flush of such a fold."""
    if acc:
        slots = list(acc)
        widths = np.array([len(v) for v in acc.values()], np.int64)
        start = np.zeros(len(slots), np.int64)
        np.cumsum(widths[:-1], out=start[1:])
        state.sums.append(
            (
                np.array([k for k, _, _ in slots], np.int64),
                np.array([m for _, m, _ in slots], np.int64),
                np.array([s for _, _, s in slots], np.int64),
                start,
                np.array([v for sums in acc.values() for v in sums], np.float64),
            )
        )
    if dacc:
        slots = list(dacc)
        entries = list(dacc.values())
        path = np.array([state.path_id(p) for _, _, p in slots], np.int64)
        ks_d = np.array([k for k, _, _ in slots], np.int64)
        minute_d = np.array([m for _, m, _ in slots], np.int64)
        state.dists.append(
            (
                ks_d, minute_d, path, np.array([e[0] for e in entries], np.int64),
                *(np.array([e[i] for e in entries], np.float64) for i in (1, 2, 3, 4)),
            )
        )  # fmt: skip
        sizes = np.array([len(e[5]) for e in entries], np.int64)
        row = np.repeat(np.arange(len(entries)), sizes)
        state.buckets.append(
            (
                ks_d[row], minute_d[row], path[row],
                np.array([k for e in entries for k in e[5]], np.int64),
                np.array([n for e in entries for n in e[5].values()], np.int64),
            )
        )  # fmt: skip
    if gacc:
        slots = list(gacc)
        entries = list(gacc.values())
        state.gauges.append(
            (
                np.array([k for k, _, _ in slots], np.int64),
                np.array([m for _, m, _ in slots], np.int64),
                np.array([state.path_id(p) for _, _, p in slots], np.int64),
                np.array([e[0][0] for e in entries], np.int64),
                *(
                    np.array(x, np.float64)
                    for x in zip(*((e[0][1], e[1], e[2]) for e in entries), strict=True)
                ),
            )
        )
