"""A version-3 or -4 record's columns as numpy arrays (``numpy.frombuffer``: no copy, no
objects for version 3; a version-4 column stored narrower than its version-3 type is widened
back to it, so the fold sees one set of types).

``read_columns`` checks the layout every later array operation relies on and raises
``WireError`` with a stable reason when a record does not fit it; the whole record is then
dead-lettered: ``bad_column`` (a column that is not a whole number of its items, or whose
length disagrees with the others), ``bad_offsets`` (offsets that do not start at 0, go
backwards or do not end at their column's length), ``too_many_rows`` and ``bad_dtype`` (a
version-4 column type its column cannot take). An integer float column holding a value beyond
+-2**53 reads as infinity there, so the column fold leaves its record to the event-by-event
fold, which reads the exact integers and rejects them as huge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tally.schemas.wire import COLUMN_TYPES, BatchV3, BatchV4, WireError
from tally.schemas.wire_columns import EXACT, column_types

DTYPES = {code: np.dtype("<" + code) for code in "bBhHiIqQd"}
# Rows any one column of a record may hold (a 1 MB record holds far fewer).
MAX_ROWS = 1 << 22


@dataclass(frozen=True, slots=True)
class Columns:
    """The typed columns of one record (names as in ``BatchV3``; offsets always present)."""

    n: int
    at: np.ndarray
    keyset: np.ndarray
    shape: np.ndarray
    value_offsets: np.ndarray
    values: np.ndarray
    dist_offsets: np.ndarray
    dist_path: np.ndarray
    dist_count: np.ndarray
    dist_sum: np.ndarray
    dist_square: np.ndarray
    dist_min: np.ndarray
    dist_max: np.ndarray
    bucket_offsets: np.ndarray
    bucket_keys: np.ndarray
    bucket_counts: np.ndarray
    gauge_offsets: np.ndarray
    gauge_path: np.ndarray
    gauge_value: np.ndarray
    gauge_at_ms: np.ndarray


def read_columns(batch: BatchV3) -> Columns:
    """Every column of ``batch`` as an array, checked to fit together."""
    n = batch.events
    if not 0 <= n <= MAX_ROWS:
        raise WireError("too_many_rows", f"{n} events")
    cols: dict[str, np.ndarray] = {}
    for (name, default), code in zip(COLUMN_TYPES, column_types(batch), strict=True):
        raw = getattr(batch, name)
        if code == "v":
            cols[name] = _widen(read_varints(raw), default)
            continue
        dtype = DTYPES[code]
        if len(raw) % dtype.itemsize:
            raise WireError("bad_column", f"{name}: {len(raw)} bytes are not {code} items")
        if len(raw) // dtype.itemsize > MAX_ROWS + 1:
            raise WireError("too_many_rows", f"{name}: {len(raw) // dtype.itemsize} rows")
        column = np.frombuffer(raw, dtype)
        if code != default:
            column = _widen(column, default)
        cols[name] = column
    _same(cols, ("at", "keyset", "shape"), n)
    if isinstance(batch, BatchV4) and not len(cols["value_offsets"]):
        cols["value_offsets"] = implied_offsets(batch.shapes, cols["shape"])
    m = len(cols["dist_path"])
    _same(cols, ("dist_path", "dist_count", "dist_sum", "dist_square", "dist_min", "dist_max"), m)
    _same(cols, ("bucket_keys", "bucket_counts"), len(cols["bucket_keys"]))
    _same(cols, ("gauge_path", "gauge_value", "gauge_at_ms"), len(cols["gauge_path"]))
    zeros = None
    for name, owners, rows in (
        ("value_offsets", n, len(cols["values"])),
        ("dist_offsets", n, m),
        ("gauge_offsets", n, len(cols["gauge_path"])),
        ("bucket_offsets", m, len(cols["bucket_keys"])),
    ):
        off = cols[name]
        if not len(off) and rows == 0 and name != "value_offsets":
            if zeros is None or len(zeros) != owners + 1:
                zeros = np.zeros(owners + 1, np.int32)
            cols[name] = off = zeros
        if len(off) != owners + 1:
            raise WireError("bad_column", f"{name}: {len(off)} offsets for {owners} rows")
        if off[0] != 0 or off[-1] != rows or (owners and bool((off[1:] < off[:-1]).any())):
            raise WireError("bad_offsets", f"{name} are not monotone positions in 0..{rows}")
    return Columns(n, **cols)


def read_varints(raw: memoryview) -> np.ndarray:
    """A ``v`` column (zigzag LEB128, ``wire_columns.varints``) as int64, decoded with numpy."""
    b = np.frombuffer(raw, np.uint8)
    if not len(b):
        return np.zeros(0, np.int64)
    last = b < 0x80
    if not last[-1]:
        raise WireError("bad_column", "a varint runs past the end of its column")
    ends = np.flatnonzero(last)
    starts = np.zeros(len(ends), np.int64)
    starts[1:] = ends[:-1] + 1
    lengths = ends - starts + 1
    if lengths.max() > 9:
        raise WireError("bad_column", "a varint longer than 9 bytes")
    position = np.arange(len(b)) - np.repeat(starts, lengths)
    z = np.add.reduceat((b & 0x7F).astype(np.int64) << (7 * position), starts)
    return (z >> 1) ^ -(z & 1)


def implied_offsets(shapes: list[list[int]], shape: np.ndarray) -> np.ndarray:
    """Version 4's value offsets: each event's values are as many as its shape's paths."""
    if len(shape) and (shape.min() < 0 or shape.max() >= len(shapes)):
        raise WireError("bad_offsets", "value offsets implied by a shape not in the table")
    widths = np.fromiter(map(len, shapes), np.int64, len(shapes))
    offsets = np.zeros(len(shape) + 1, np.int64)
    np.cumsum(widths[shape], out=offsets[1:])
    return offsets


def _widen(column: np.ndarray, default: str) -> np.ndarray:
    """A narrow column as its version-3 type (``NARROW_TYPES`` makes this exact), integers
    beyond +-2**53 in a float column as infinities of their sign."""
    wide = column.astype(DTYPES[default])
    if default == "d" and column.dtype.itemsize == 8 and len(column):
        huge = (column > EXACT) | (column < -EXACT)
        if huge.any():
            wide[huge] = np.copysign(np.inf, wide[huge])
    return wide


def _same(cols: dict[str, np.ndarray], names: tuple[str, ...], rows: int) -> None:
    for name in names:
        if len(cols[name]) != rows:
            raise WireError("bad_column", f"{name}: {len(cols[name])} rows, expected {rows}")
