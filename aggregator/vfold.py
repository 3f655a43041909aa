"""The column fold: a version-3 record screened and appended to the fold with numpy.

Validation screens every column at once with the limits of ``schemas/limits.py`` and
``schemas/sketch.py`` (the distribution and gauge screens are ``vfold_checks``; each key and
path name is checked once per fold, memoized; tables are ``vfold_tables``). A screened record
is appended to the fold's ``ColumnState`` (``column_state``) as typed arrays: the only Python
work per record is one lookup per distinct keyset, shape, string and path, mapping it to its
fold-wide id or memoized check; nothing is done per event or per group until the state is
reduced (by size, and in ``rows()``).

A record with anything to reject, or whose paths would change kind within it, is left
untouched (``fold_columns`` returns False) and folded event by event, which rejects each bad
event with its usual reason and keeps the rest.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from tally.aggregator.column_state import PENDING_ROWS, ColumnState
from tally.aggregator.columns import Columns
from tally.aggregator.rows import KIND_DIST, KIND_GAUGE, KIND_SUM
from tally.aggregator.vfold_checks import dists_ok, gauges_ok
from tally.aggregator.vfold_tables import (
    Interned,
    Tables,
    fold_ids,
    key_lengths_ok,
    names_ok,
    present,
    string_bytes,
)
from tally.schemas.limits import Limits


class FoldState(Interned, Protocol):
    """What the column fold reads and updates of a ``PartitionFold``."""

    limits: Limits
    key_problems: dict[str, str | None]
    path_problems: dict[str, str | None]
    cols: ColumnState
    path_kinds: dict[str, int]
    events: int

    def path_of(
        self, strings: list[str], index: Any, cache: dict[int, tuple[str, str | None]]
    ) -> tuple[str, str | None]: ...

    def shape_widths(self) -> np.ndarray: ...

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
    k_tables, s_tables = Tables.of(keysets, len(strings)), Tables.of(shapes, len(strings))
    if k_tables is None or s_tables is None:
        return False  # the event fold says which events name a bad table
    used_ks, used_sh = present(ks, n_ks), present(sh, n_sh)
    key_lengths = k_tables.lengths[used_ks]
    if key_lengths.min() < 1 or key_lengths.max() > limits.max_keys:
        return False
    if s_tables.lengths[used_sh].max() > limits.max_values:
        return False
    strs = np.array(strings, dtype=object)
    lengths = np.fromiter(map(len, strings), np.int64, len(strings))
    if not key_lengths_ok(lengths[k_tables.indices(used_ks)], limits.max_key_length):
        return False
    summed = strs[present(s_tables.indices(used_sh), len(strings))].tolist()
    if not names_ok(state.path_problems, summed) or any(map(state.path_kinds.get, summed)):
        return False  # a bad path, or one that is a distribution or gauge in this fold
    widths = np.diff(c.value_offsets)
    if not np.array_equal(widths, s_tables.lengths[sh]):
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
        if not _kinds_ok(state, c, names, d_name, g_name, set(summed)):
            return False
    str_bytes = string_bytes(lengths)
    fks = fold_ids(state, strs, str_bytes, k_tables, used_ks, True)[ks]
    _commit(state, c, widths, fks, (strs, str_bytes, s_tables), names, d_name, g_name, reference)
    return True


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
    summed: set[str],
) -> bool:
    """Each path keeps one kind, whatever the event order: no path is a distribution and a
    gauge or a summed path in this record, none changes the kind the fold gave it, and no
    event names a path twice."""
    by_id = list(names)
    dists = {by_id[i] for i in np.unique(d_name).tolist()}
    gauges = {by_id[i] for i in np.unique(g_name).tolist()}
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


def _commit(
    state: FoldState,
    c: Columns,
    widths: np.ndarray,
    fks: np.ndarray,
    shape_tables: tuple[np.ndarray, np.ndarray, Tables],
    names: dict[str, int],
    d_name: np.ndarray,
    g_name: np.ndarray,
    reference: int,
) -> None:
    """Append a screened record to the fold's columns (nothing can be rejected any more):
    ``fks`` is each event's fold-wide keyset id. Python work per distinct shape and path of
    the record, none per event."""
    at = c.at
    n = c.n
    minute = at - at % 60
    kinds = state.path_kinds
    if not kinds and state.shape_list:  # as ``check_kinds`` does for a version-2 event
        for t in state.shape_list:
            for name in t:
                kinds.setdefault(name, KIND_SUM)
    cols = state.cols
    held = cols.nbytes
    if len(c.values):
        strs, str_bytes, s_tables = shape_tables
        rows = np.flatnonzero(widths)
        used = present(c.shape[rows], len(s_tables.lengths))
        for name in strs[present(s_tables.indices(used), len(strs))].tolist():
            kinds.setdefault(name, KIND_SUM)
        sh_fold = fold_ids(state, strs, str_bytes, s_tables, used, False)
        cols.sums.append(
            (
                fks[rows],
                minute[rows],
                sh_fold[c.shape[rows]],
                c.value_offsets[rows].astype(np.int64),
                c.values.astype(np.float64),  # a copy: the record's buffer is not kept
            )
        )
    by_name = list(names)
    path_ids = np.array([cols.path_id(p) for p in by_name], np.int64)
    if len(d_name):
        for i in np.unique(d_name).tolist():
            kinds[by_name[i]] = KIND_DIST
        row_event = np.repeat(np.arange(n), np.diff(c.dist_offsets))
        d_ks, d_minute, d_path = fks[row_event], minute[row_event], path_ids[d_name]
        cols.dists.append(
            (
                d_ks, d_minute, d_path, c.dist_count.astype(np.int64),
                c.dist_sum.astype(np.float64), c.dist_square.astype(np.float64),
                c.dist_min.astype(np.float64), c.dist_max.astype(np.float64),
            )
        )  # fmt: skip
        bucket_row = np.repeat(np.arange(len(d_name)), np.diff(c.bucket_offsets))
        cols.buckets.append(
            (
                d_ks[bucket_row], d_minute[bucket_row], d_path[bucket_row],
                c.bucket_keys.astype(np.int64), c.bucket_counts.astype(np.int64),
            )
        )  # fmt: skip
    if len(g_name):
        for i in np.unique(g_name).tolist():
            kinds[by_name[i]] = KIND_GAUGE
        row_event = np.repeat(np.arange(n), np.diff(c.gauge_offsets))
        value = c.gauge_value.astype(np.float64)
        cols.gauges.append(
            (
                fks[row_event], minute[row_event], path_ids[g_name],
                c.gauge_at_ms.astype(np.int64), value, value, value,
            )
        )  # fmt: skip
    cols.settle(state.shape_widths(), PENDING_ROWS)
    shortest = state.limits.shortest_ttl()
    if shortest is not None:
        stale = at[at < reference - shortest[1]]
        if len(stale):
            state.count_expired(stale.tolist(), reference)
    state.events += n
    state.nbytes += cols.nbytes - held
