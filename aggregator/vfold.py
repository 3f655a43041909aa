"""The column fold: a version-3 record folded with numpy array operations.

A record's events are grouped by (keyset, minute, shape) for summed values and by (keyset,
minute, path) for distributions and gauges with ``numpy.unique``; values, counts, sums and
sketch buckets are added per group with ``numpy.bincount`` / ``numpy.add.at``, and only the
groups (not the events) touch the fold's Python dicts. The result is the event-by-event fold's
(``fold.PartitionFold._fold``): groups are merged in order of their first event, float sums add
in event order starting from what the fold already held (``bincount`` adds its weights in
input order), gauges keep the last reading by ``(at_ms, value)``, and memory is counted with
the same ``fold_bytes`` estimate. Values travel as float64, so sums are the same as long as
partial sums stay below 2**53 (where integers lose exactness in ClickHouse's Float64 anyway).

Validation screens every column at once with the limits of ``schemas/limits.py`` and
``schemas/sketch.py`` (the distribution and gauge screens are ``vfold_checks``). A record with
anything to reject, or whose paths would change kind within it, is left untouched
(``fold_columns`` returns False) and folded event by event, which rejects each bad event with
its usual reason and keeps the rest.
"""

from __future__ import annotations

import sys
from itertools import chain
from typing import Any, Protocol

import numpy as np

from tally.aggregator.columns import Columns
from tally.aggregator.fold_bytes import DIST_BUCKET_BYTES, ENTRY_BYTES, VALUE_BYTES
from tally.aggregator.rows import KIND_DIST, KIND_GAUGE, KIND_SUM
from tally.aggregator.sketch_merge import merge_sketch
from tally.aggregator.vfold_checks import dists_ok, gauges_ok
from tally.schemas import sketch
from tally.schemas.limits import Limits

KEY_SPAN = 1 << 16  # sketch keys (ZERO_KEY .. MAX_KEY) shifted by KEY_SHIFT fit 16 bits
KEY_SHIFT = -sketch.ZERO_KEY


class FoldState(Protocol):
    """What the column fold reads and updates of a ``PartitionFold``."""

    limits: Limits
    key_problems: dict[str, str | None]
    path_problems: dict[str, str | None]
    acc: dict[tuple[int, int, int], list]
    dacc: dict[tuple[int, int, str], list]
    gacc: dict[tuple[int, int, str], list]
    path_kinds: dict[str, int]
    shape_list: list[tuple[str, ...]]
    keyset_list: list[tuple[str, ...]]
    events: int
    nbytes: int

    def path_of(
        self, strings: list[str], index: Any, cache: dict[int, tuple[str, str | None]]
    ) -> tuple[str, str | None]: ...

    def intern(self, names: tuple[str, ...], is_keys: bool) -> int: ...

    def count_expired(self, stale: list[int], reference: int) -> None: ...


def fold_columns(
    state: FoldState,
    strings: list[str],
    keysets: list[Any],
    shapes: list[Any],
    c: Columns,
    timestamp_ms: int,
) -> bool:
    """Fold every event of a record into ``state``; False (``state`` untouched) when some
    event is to be rejected or a path's kind depends on event order."""
    n = c.n
    if n == 0:
        return True
    limits = state.limits
    reference = timestamp_ms // 1000
    lo, hi = limits.time_bounds(reference)
    at, ks, sh = c.at, c.keyset, c.shape
    n_ks, n_sh = len(keysets), len(shapes)
    if at.min() < lo or at.max() > hi or not n_ks or not n_sh:
        return False
    if ks.min() < 0 or ks.max() >= n_ks or sh.min() < 0 or sh.max() >= n_sh:
        return False
    ks_ok, _ = _tables_ok(state, strings, keysets, True)
    sh_ok, shape_widths = _tables_ok(state, strings, shapes, False)
    if not ks_ok[ks].all() or not sh_ok[sh].all():
        return False
    ks_names, shape_list = TableNames(strings, keysets), TableNames(strings, shapes)
    widths = np.diff(c.value_offsets)
    if not np.array_equal(widths, shape_widths[sh]):
        return False
    if len(c.values) and not (np.abs(c.values) <= limits.max_abs_value).all():
        return False  # also NaN
    dcount, gcount = np.diff(c.dist_offsets), np.diff(c.gauge_offsets)
    if ((widths == 0) & (dcount == 0) & (gcount == 0)).any():
        return False
    names: dict[str, int] = {}
    d_name = g_name = np.zeros(0, np.int64)
    if len(c.dist_path) or len(c.gauge_path):
        cache: dict[int, tuple[str, str | None]] = {}
        found_d = _path_ids(state, strings, c.dist_path, names, cache)
        found_g = _path_ids(state, strings, c.gauge_path, names, cache)
        if found_d is None or found_g is None:
            return False
        d_name, g_name = found_d, found_g
        if not dists_ok(c) or not gauges_ok(c, limits.max_abs_value):
            return False
        if not _kinds_ok(state, c, names, d_name, g_name, np.unique(sh), shape_list):
            return False
    _commit(state, c, widths, ks_names, shape_list, names, d_name, g_name, reference)
    return True


class TableNames:
    """A record's keysets or shapes as name tuples, built when asked for (valid tables only)."""

    def __init__(self, strings: list[str], tables: list[list[int]]) -> None:
        self.strings = strings
        self.tables = tables

    def __len__(self) -> int:
        return len(self.tables)

    def __getitem__(self, index: int) -> tuple[str, ...]:
        return tuple(map(self.strings.__getitem__, self.tables[index]))


def _tables_ok(
    state: FoldState, strings: list[str], tables: list[list[int]], is_keys: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Which of a record's keysets/shapes ``check_tables`` accepts, and their lengths.

    Each string is checked once (memoized per fold) rather than once per table naming it: a
    table passes when its indices are in range, it has 1..``max_keys`` valid keys, or up to
    ``max_values`` valid paths none of which is a distribution or gauge in this fold.
    """
    lengths = np.fromiter(map(len, tables), np.int64, len(tables))
    flat = np.fromiter(chain.from_iterable(tables), np.int64, int(lengths.sum()))
    if len(flat) and (flat.min() < 0 or flat.max() >= len(strings)):
        return np.zeros(len(tables), bool), lengths
    limits = state.limits
    if is_keys:
        memo = state.key_problems
        good = np.fromiter((memo[name] is None for name in strings), bool, len(strings))
        ok = (lengths >= 1) & (lengths <= limits.max_keys)
    else:
        memo, kinds = state.path_problems, state.path_kinds
        good = np.fromiter(
            (memo[name] is None and not kinds.get(name, 0) for name in strings), bool, len(strings)
        )
        ok = lengths <= limits.max_values
    bad = np.zeros(len(flat) + 1, np.int64)
    np.cumsum(~good[flat], out=bad[1:])
    ends = np.cumsum(lengths)
    return ok & (bad[ends] == bad[ends - lengths]), lengths


def _path_ids(
    state: FoldState,
    strings: list[str],
    column: np.ndarray,
    names: dict[str, int],
    cache: dict[int, tuple[str, str | None]],
) -> np.ndarray | None:
    """Each row's path as an id in ``names`` (equal paths, equal ids), or None if one is bad."""
    if not len(column):
        return np.zeros(0, np.int64)
    unique, inverse = np.unique(column, return_inverse=True)
    ids = np.empty(len(unique), np.int64)
    for i, index in enumerate(unique.tolist()):
        path, problem = state.path_of(strings, index, cache)
        if problem is not None:
            return None
        ids[i] = names.setdefault(path, len(names))
    return ids[inverse]


def _kinds_ok(
    state: FoldState,
    c: Columns,
    names: dict[str, int],
    d_name: np.ndarray,
    g_name: np.ndarray,
    used_shapes: np.ndarray,
    shape_list: TableNames,
) -> bool:
    """Each path keeps one kind, whatever the event order: no path is a distribution and a
    gauge or a summed path in this record, none changes the kind the fold gave it, and no
    event names a path twice."""
    by_id = list(names)
    dists = {by_id[i] for i in np.unique(d_name).tolist()}
    gauges = {by_id[i] for i in np.unique(g_name).tolist()}
    summed = {name for i in used_shapes.tolist() for name in shape_list[i]}
    if not dists.isdisjoint(gauges) or not summed.isdisjoint(dists | gauges):
        return False
    kinds = state.path_kinds or {name: KIND_SUM for t in state.shape_list for name in t}
    if any(kinds.get(p, KIND_DIST) != KIND_DIST for p in dists):
        return False
    if any(kinds.get(p, KIND_GAUGE) != KIND_GAUGE for p in gauges):
        return False
    n = c.n
    pairs = np.concatenate(
        (
            np.repeat(np.arange(n), np.diff(c.dist_offsets)) * len(names) + d_name,
            np.repeat(np.arange(n), np.diff(c.gauge_offsets)) * len(names) + g_name,
        )
    )
    if len(pairs) < 2:
        return True
    ordered = np.sort(pairs, kind="stable")  # nearly sorted already: rows come in event order
    return not (ordered[1:] == ordered[:-1]).any()


def _groups(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group ids of ``key``'s rows numbered by first appearance, and each group's first row."""
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse.ravel()], first[order]


def _by_group(gid: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows ordered by group (stable) and where each group starts: for ``ufunc.reduceat``."""
    order = np.argsort(gid, kind="stable")
    return order, np.searchsorted(gid[order], np.arange(groups))


def _in_order_of_use(ids: np.ndarray) -> list[int]:
    """The distinct values of ``ids`` in order of first appearance."""
    unique, first = np.unique(ids, return_index=True)
    return unique[np.argsort(first, kind="stable")].tolist()


def _commit(
    state: FoldState,
    c: Columns,
    widths: np.ndarray,
    ks_names: TableNames,
    shape_list: TableNames,
    names: dict[str, int],
    d_name: np.ndarray,
    g_name: np.ndarray,
    reference: int,
) -> None:
    """Merge a screened record into the fold (nothing can be rejected any more)."""
    at = c.at
    n = c.n
    minute = at - at % 60
    kinds = state.path_kinds
    if not kinds and state.shape_list:  # as ``check_kinds`` does for a version-2 event
        for t in state.shape_list:
            for name in t:
                kinds.setdefault(name, KIND_SUM)
    ks_fold = np.full(len(ks_names), -1, np.int64)
    for i in _in_order_of_use(c.keyset):
        ks_fold[i] = state.intern(ks_names[i], True)
    sh_fold = np.full(len(shape_list), -1, np.int64)
    with_values = np.flatnonzero(widths)
    for i in _in_order_of_use(c.shape[with_values]):
        sh_fold[i] = state.intern(shape_list[i], False)
        for name in shape_list[i]:
            kinds.setdefault(name, KIND_SUM)
    mlo = int(minute.min())
    span = (int(minute.max()) - mlo) // 60 + 1
    fks = ks_fold[c.keyset]
    minute_index = (minute - mlo) // 60
    added = 0
    if len(with_values):
        added += _fold_values(
            state, c, widths, with_values, fks, sh_fold, minute, minute_index, span
        )
    by_id = list(names)
    for offsets, name, fold_kind in (
        (c.dist_offsets, d_name, _fold_dists),
        (c.gauge_offsets, g_name, _fold_gauges),
    ):
        if len(name):
            rows_event = np.repeat(np.arange(n), np.diff(offsets))
            row_fks = fks[rows_event]
            gid, first = _groups((row_fks * len(names) + name) * span + minute_index[rows_event])
            firsts = zip(
                row_fks[first].tolist(), minute[rows_event[first]].tolist(), name[first].tolist(),
                strict=True,
            )  # fmt: skip
            added += fold_kind(state, c, gid, [(k, m, by_id[p]) for k, m, p in firsts])
    shortest = state.limits.shortest_ttl()
    if shortest is not None:
        stale = at[at < reference - shortest[1]]
        if len(stale):
            state.count_expired(stale.tolist(), reference)
    state.events += n
    state.nbytes += added


def _fold_values(
    state: FoldState,
    c: Columns,
    widths: np.ndarray,
    with_values: np.ndarray,
    fks: np.ndarray,
    sh_fold: np.ndarray,
    minute: np.ndarray,
    minute_index: np.ndarray,
    span: int,
) -> int:
    """Sum the values per (keyset, minute, shape); returns bytes added."""
    acc = state.acc
    e_ks, e_sh = fks[with_values], sh_fold[c.shape[with_values]]
    key = (e_ks * len(state.shape_list) + e_sh) * span + minute_index[with_values]
    gid, first = _groups(key)
    e_widths = widths[with_values]
    g_width = e_widths[first]
    base = np.zeros(len(first) + 1, np.int64)
    np.cumsum(g_width, out=base[1:])
    # each value's place: its group's base plus its position within its event
    value_event = np.repeat(np.arange(len(with_values)), e_widths)
    starts = np.repeat(c.value_offsets[with_values], e_widths)
    place = base[gid][value_event] + (np.arange(len(c.values)) - starts)
    slots = list(
        zip(
            e_ks[first].tolist(),
            minute[with_values][first].tolist(),
            e_sh[first].tolist(),
            strict=True,
        )
    )
    olds = [acc.get(slot) for slot in slots]
    base_l = base.tolist()
    if any(old is not None for old in olds):  # what the fold holds is added first, in order
        held = [g for g, old in enumerate(olds) if old is not None]
        prior_place = np.concatenate([np.arange(base_l[g], base_l[g + 1]) for g in held])
        prior = np.array([v for g in held for v in olds[g]], np.float64)
        sums = np.bincount(
            np.concatenate((prior_place, place)),
            np.concatenate((prior, c.values)),
            minlength=base_l[-1],
        ).tolist()
    else:
        sums = np.bincount(place, c.values, minlength=base_l[-1]).tolist()
    added = 0
    for g, slot in enumerate(slots):
        acc[slot] = sums[base_l[g] : base_l[g + 1]]
        if olds[g] is None:
            added += ENTRY_BYTES + VALUE_BYTES * (base_l[g + 1] - base_l[g])
    return added


def _fold_dists(
    state: FoldState, c: Columns, gid: np.ndarray, slots: list[tuple[int, int, str]]
) -> int:
    """Merge distribution rows per (keyset, minute, path) group ``gid`` (``slots``: each
    group's key); returns bytes added."""
    dacc, kinds = state.dacc, state.path_kinds
    groups = len(slots)
    olds = [dacc.get(slot) for slot in slots]
    order, starts = _by_group(gid, groups)
    count = np.add.reduceat(c.dist_count[order], starts)
    held = np.array([g for g, old in enumerate(olds) if old is not None], np.int64)
    totals = []
    for column, field in ((c.dist_sum, 1), (c.dist_square, 2)):
        if len(held):  # sequential float sums, starting from the fold's
            prior = np.array([olds[g][field] for g in held.tolist()], np.float64)
            totals.append(
                np.bincount(np.concatenate((held, gid)), np.concatenate((prior, column)), groups)
            )
        else:
            totals.append(np.bincount(gid, column, groups))
    low = np.minimum.reduceat(c.dist_min[order], starts)
    high = np.maximum.reduceat(c.dist_max[order], starts)
    # buckets: counts per (group, key), split by group
    bucket_group = np.repeat(gid, np.diff(c.bucket_offsets))
    unique, inverse = np.unique(
        bucket_group * KEY_SPAN + (c.bucket_keys + KEY_SHIFT), return_inverse=True
    )
    bucket_n = np.zeros(len(unique), np.int64)
    np.add.at(bucket_n, inverse.ravel(), c.bucket_counts)
    bounds = np.searchsorted(unique // KEY_SPAN, np.arange(groups + 1)).tolist()
    bucket_keys = (unique % KEY_SPAN - KEY_SHIFT).tolist()
    bucket_n_l = bucket_n.tolist()
    added = 0
    rows = zip(
        count.tolist(),
        totals[0].tolist(),
        totals[1].tolist(),
        low.tolist(),
        high.tolist(),
        strict=True,
    )
    for g, (n, total, square, vmin, vmax) in enumerate(rows):
        slot, old = slots[g], olds[g]
        keys = bucket_keys[bounds[g] : bounds[g + 1]]
        counts = bucket_n_l[bounds[g] : bounds[g + 1]]
        kinds[slot[2]] = KIND_DIST
        if old is None:
            dacc[slot] = [n, total, square, vmin, vmax, dict(zip(keys, counts, strict=True))]
            added += ENTRY_BYTES + sys.getsizeof(slot[2]) + DIST_BUCKET_BYTES * len(keys)
            continue
        old[1] = total  # summed from the entry's own sums above
        old[2] = square
        added += merge_sketch(old, n, vmin, vmax, keys, counts)
    return added


def _fold_gauges(
    state: FoldState, c: Columns, gid: np.ndarray, slots: list[tuple[int, int, str]]
) -> int:
    """Keep each (keyset, minute, path)'s last reading (ties: larger value), min and max."""
    gacc, kinds = state.gacc, state.path_kinds
    groups = len(slots)
    order = np.lexsort((c.gauge_value, c.gauge_at_ms, gid))
    last = order[np.searchsorted(gid[order], np.arange(groups), side="right") - 1]
    by_group, starts = _by_group(gid, groups)
    low = np.minimum.reduceat(c.gauge_value[by_group], starts)
    high = np.maximum.reduceat(c.gauge_value[by_group], starts)
    added = 0
    rows = zip(
        slots, c.gauge_at_ms[last].tolist(), c.gauge_value[last].tolist(), low.tolist(),
        high.tolist(), strict=True,
    )  # fmt: skip
    for slot, at_ms, value, vmin, vmax in rows:
        path = slot[2]
        kinds[path] = KIND_GAUGE
        found = gacc.get(slot)
        if found is None:
            gacc[slot] = [(at_ms, value), vmin, vmax]
            added += ENTRY_BYTES + sys.getsizeof(path)
            continue
        found[0] = max(found[0], (at_ms, value))
        found[1] = min(found[1], vmin)
        found[2] = max(found[2], vmax)
    return added
