"""Wire versions 3 and 4 without numpy: events into typed columns (``array``) and back.

The client writes ``BatchV3`` with ``encode_columns``: one ``array.array`` per column, appended
to per event and written as msgpack bin (little-endian; swapped on a big-endian host); with
``narrow=True`` it writes ``BatchV4``, each column narrowed to the smallest type that holds it
(``narrow_column``: fixed-size integers, zigzag varints, or float64; value offsets implied by
the shapes; ``column_types`` reads a record's types back and refuses bad ones). Nothing
here needs numpy, so the client stays thin; the aggregator reads the same columns with
``numpy.frombuffer`` (``aggregator/columns.py``). ``events_of`` turns a record back into
``EventV2`` objects (the client's spool replay re-routes records with it, and the aggregator
folds a record event by event with it when a record needs the careful path).
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable, Sequence
from itertools import pairwise
from typing import Any

import msgspec

from tally.schemas.wire import (
    COLUMN_TYPES,
    NARROW_TYPES,
    BatchV1,
    BatchV2,
    BatchV3,
    BatchV4,
    DistV2,
    EventV2,
    GaugeV2,
    WireError,
)

SWAP = sys.byteorder == "big"
EXACT = 2**53  # integers a float64 holds exactly
INT_RANGES = (
    ("b", -(2**7), 2**7 - 1), ("B", 0, 2**8 - 1), ("h", -(2**15), 2**15 - 1),
    ("H", 0, 2**16 - 1), ("i", -(2**31), 2**31 - 1), ("I", 0, 2**32 - 1),
    ("q", -(2**63), 2**63 - 1),
)  # fmt: skip

# (path, count, sum, square, min, max, bucket keys, bucket counts) and (path, value, at_ms)
DistItem = tuple[str, int, float, float, float, float, Sequence[int], Sequence[int]]
GaugeItem = tuple[str, float, int]
Event = tuple[
    int, Sequence[str], Sequence[str], Sequence[float], Iterable[DistItem], Iterable[GaugeItem]
]


def _bytes(column: array) -> bytes:
    if SWAP:
        column = array(column.typecode, column)
        column.byteswap()
    return column.tobytes()


def varint(z: int) -> bytes:
    """LEB128 of a non-negative integer: 7 bits a byte, low first, high bit = more."""
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


VARINT_SMALL = 1 << 13  # zigzag varints of -8192 .. 8191 (two bytes at most), precomputed
_SMALL = [varint((v << 1) ^ (v >> 63)) for v in range(-VARINT_SMALL, VARINT_SMALL)]


def varints(ints: Iterable[int]) -> bytes:
    """Zigzag LEB128 of each integer (within +-2**63), concatenated: the ``v`` column type."""
    small, lo, hi = _SMALL, -VARINT_SMALL, VARINT_SMALL
    return b"".join([small[v + hi] if lo <= v < hi else varint((v << 1) ^ (v >> 63)) for v in ints])


def read_varints(raw: bytes | memoryview) -> list[int]:
    """The integers of a ``v`` column; ``ValueError`` if one runs past the end or over 9 bytes."""
    out: list[int] = []
    z = shift = 0
    for byte in bytes(raw):
        z |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            out.append((z >> 1) ^ -(z & 1))
            z = shift = 0
        elif shift >= 63:
            raise ValueError("a varint longer than 9 bytes")
    if shift:
        raise ValueError("a varint runs past the end of its column")
    return out


def narrow_column(column: array, default: str) -> tuple[str, bytes]:
    """``column`` (typecode, bytes) in the smallest type ``NARROW_TYPES[default]`` allows that
    holds it exactly: integers for a float column whose values are all integral and within
    +-2**53, as fixed-size integers or zigzag varints (``v``), whichever is smaller."""
    if not column:
        return "B", b""
    ints = column
    if column.typecode == "d":
        try:
            ints = array("q", map(int, column))  # ValueError (NaN), OverflowError (inf, huge)
        except (ValueError, OverflowError):
            return "d", _bytes(column)
        if array("d", ints) != column:
            return "d", _bytes(column)  # not all integral
    lo, hi = min(ints), max(ints)
    if column.typecode == "d" and (lo < -EXACT or hi > EXACT):
        return "d", _bytes(column)
    for code, low, high in INT_RANGES:
        if low <= lo and hi <= high and code in NARROW_TYPES[default]:
            fixed = array(code, ints)
            if "v" in NARROW_TYPES[default] and fixed.itemsize > 1:
                packed = varints(ints)
                if len(packed) < len(fixed) * fixed.itemsize:
                    return "v", packed
            return code, _bytes(fixed)
    return column.typecode, _bytes(column)


def column_types(batch: BatchV3) -> list[str]:
    """Each column's ``array`` typecode: ``COLUMN_TYPES``' for version 3, ``dtypes`` for
    version 4; raises ``WireError("bad_dtype")`` for types a column cannot take."""
    defaults = [code for _, code in COLUMN_TYPES]
    if not isinstance(batch, BatchV4):
        return defaults
    dtypes = batch.dtypes
    if len(dtypes) != len(defaults):
        raise WireError("bad_dtype", f"{len(dtypes)} column types for {len(defaults)} columns")
    for (name, default), code in zip(COLUMN_TYPES, dtypes, strict=True):
        if code not in NARROW_TYPES[default]:
            raise WireError("bad_dtype", f"{name} cannot be stored as {code!r}")
    return list(dtypes)


def encode_columns(
    encoder: msgspec.msgpack.Encoder, source: str, events: Iterable[Event], narrow: bool = False
) -> bytes:
    """One ``BatchV3`` record of ``events``: ``(at, keys, paths, values, dists, gauges)``;
    ``BatchV4`` (narrow columns) with ``narrow``.

    Strings, keysets and shapes are interned per record; distribution and gauge paths enter
    the string table first, as they come. Raises (``OverflowError``, ``TypeError``) on a value
    that has no column type, so the packer can isolate the event at fault.
    """
    strings: dict[str, int] = {}
    keysets: dict[tuple[str, ...], int] = {}
    shapes: dict[tuple[str, ...], int] = {}
    col = {name: array(code) for name, code in COLUMN_TYPES}
    at, keyset, shape = col["at"], col["keyset"], col["shape"]
    value_offsets, values = col["value_offsets"], col["values"]
    dist_offsets, gauge_offsets = col["dist_offsets"], col["gauge_offsets"]
    dist_path, dist_count = col["dist_path"], col["dist_count"]
    dist_sum, dist_square, dist_min, dist_max = (
        col["dist_sum"], col["dist_square"], col["dist_min"], col["dist_max"]
    )  # fmt: skip
    bucket_offsets, bucket_keys, bucket_counts = (
        col["bucket_offsets"], col["bucket_keys"], col["bucket_counts"]
    )  # fmt: skip
    gauge_path, gauge_value, gauge_at_ms = (
        col["gauge_path"], col["gauge_value"], col["gauge_at_ms"]
    )  # fmt: skip
    value_offsets.append(0)
    dist_offsets.append(0)
    gauge_offsets.append(0)
    bucket_offsets.append(0)
    n = 0
    kinds = False
    for ev_at, keys, paths, vals, dists, gauges in events:
        at.append(ev_at)
        keys_t = tuple(keys)
        paths_t = tuple(paths)
        keyset.append(keysets.setdefault(keys_t, len(keysets)))
        shape.append(shapes.setdefault(paths_t, len(shapes)))
        values.extend(vals)
        value_offsets.append(len(values))
        for path, count, total, square, vmin, vmax, bkeys, bcounts in dists:
            if len(bkeys) != len(bcounts):
                raise ValueError("bucket keys and counts differ in length")
            dist_path.append(strings.setdefault(path, len(strings)))
            dist_count.append(count)
            dist_sum.append(total)
            dist_square.append(square)
            dist_min.append(vmin)
            dist_max.append(vmax)
            bucket_keys.extend(bkeys)
            bucket_counts.extend(bcounts)
            bucket_offsets.append(len(bucket_keys))
            kinds = True
        for path, value, at_ms in gauges:
            gauge_path.append(strings.setdefault(path, len(strings)))
            gauge_value.append(value)
            gauge_at_ms.append(at_ms)
            kinds = True
        dist_offsets.append(len(dist_path))
        gauge_offsets.append(len(gauge_path))
        n += 1
    if not kinds:  # no event has any: the offsets columns stay empty
        del dist_offsets[:], gauge_offsets[:], bucket_offsets[:]
    for table in (keysets, shapes):
        for names in table:
            for name in names:
                strings.setdefault(name, len(strings))
    tables = (
        source,
        list(strings),
        [[strings[k] for k in keys] for keys in keysets],
        [[strings[p] for p in paths] for paths in shapes],
        n,
    )
    if not narrow:
        return encoder.encode(
            BatchV3(*tables, *(memoryview(_bytes(col[name])) for name, _ in COLUMN_TYPES))
        )
    del value_offsets[:]  # implied by the shapes' widths
    narrowed = [narrow_column(col[name], code) for name, code in COLUMN_TYPES]
    return encoder.encode(
        BatchV4(
            *tables,
            *(memoryview(data) for _, data in narrowed),
            "".join(code for code, _ in narrowed),
        )
    )


def _read(batch: BatchV3, name: str, code: str) -> list[Any]:
    if code == "v":
        return read_varints(getattr(batch, name))
    column = array(code)
    column.frombytes(getattr(batch, name))  # ValueError if not a whole number of items
    if SWAP:
        column.byteswap()
    return column.tolist()


def implied_offsets(shapes: list[list[int]], shape: list[int]) -> list[int]:
    """Version 4's value offsets: each event's values are as many as its shape's paths."""
    out = [0]
    total = 0
    for index in shape:
        if not 0 <= index < len(shapes):
            raise WireError("bad_offsets", "value offsets implied by a shape not in the table")
        total += len(shapes[index])
        out.append(total)
    return out


def events_of(batch: BatchV3) -> list[EventV2]:
    """The events of a version-3 or -4 record, one ``EventV2`` each (no numpy; checks the
    layout).

    Raises ``ValueError`` when the columns do not fit together (lengths, offsets), or their
    types are not allowed (``WireError``, a ``ValueError``).
    """
    types = column_types(batch)
    c = {
        name: _read(batch, name, code) for (name, _), code in zip(COLUMN_TYPES, types, strict=True)
    }
    n = batch.events
    if not (len(c["at"]) == len(c["keyset"]) == len(c["shape"]) == n >= 0):
        raise ValueError("event columns differ in length")
    if isinstance(batch, BatchV4) and not c["value_offsets"]:
        c["value_offsets"] = implied_offsets(batch.shapes, c["shape"])
    offsets = {}
    for name, rows in (
        ("value_offsets", len(c["values"])),
        ("dist_offsets", len(c["dist_path"])),
        ("gauge_offsets", len(c["gauge_path"])),
        ("bucket_offsets", len(c["bucket_keys"])),
    ):
        off = c[name]
        if not off and name != "value_offsets" and not rows:
            off = [0] * (n + 1 if name != "bucket_offsets" else len(c["dist_path"]) + 1)
        if off and (off[0] != 0 or off[-1] != rows or any(b < a for a, b in pairwise(off))):
            raise ValueError(f"{name} are not monotone positions of its column")
        offsets[name] = off
    m = len(c["dist_path"])
    if len(offsets["value_offsets"]) != n + 1 or len(offsets["dist_offsets"]) != n + 1:
        raise ValueError("offsets differ in length from the events")
    if len(offsets["gauge_offsets"]) != n + 1 or len(offsets["bucket_offsets"]) != m + 1:
        raise ValueError("offsets differ in length from their rows")
    for names in (
        ("dist_path", "dist_count", "dist_sum", "dist_square", "dist_min", "dist_max"),
        ("bucket_keys", "bucket_counts"),
        ("gauge_path", "gauge_value", "gauge_at_ms"),
    ):
        if len({len(c[name]) for name in names}) != 1:
            raise ValueError(f"columns {names} differ in length")
    vo, do, go, bo = (
        offsets[k] for k in ("value_offsets", "dist_offsets", "gauge_offsets", "bucket_offsets")
    )
    dists = [
        DistV2(
            c["dist_path"][r], c["dist_count"][r], c["dist_sum"][r], c["dist_square"][r],
            c["dist_min"][r], c["dist_max"][r],
            c["bucket_keys"][bo[r] : bo[r + 1]], c["bucket_counts"][bo[r] : bo[r + 1]],
        )
        for r in range(m)
    ]  # fmt: skip
    gauges = [
        GaugeV2(p, v, t)
        for p, v, t in zip(c["gauge_path"], c["gauge_value"], c["gauge_at_ms"], strict=True)
    ]
    return [
        EventV2(
            c["at"][i], c["keyset"][i], c["shape"][i], c["values"][vo[i] : vo[i + 1]],
            dists[do[i] : do[i + 1]], gauges[go[i] : go[i + 1]],
        )
        for i in range(n)
    ]  # fmt: skip


class ColumnsEncoder:
    """``BatchEncoder``'s interface, writing version 3 (or 4, narrow columns):
    ``(at, keys, paths, values[, kinds])``.

    ``kinds`` is ``(dists, gauges)`` as ``ingest.flatten.flatten_all`` returns them. Not
    thread-safe: one encoder per sending thread.
    """

    def __init__(self, source: str, version: int = 3) -> None:
        self._source = source
        self._encoder = msgspec.msgpack.Encoder()
        self._narrow = version >= 4

    def encode(self, events: Iterable[tuple[Any, ...]]) -> bytes:
        """One ``BatchV3`` record of ``events`` (``BatchV4`` for version 4)."""
        return encode_columns(self._encoder, self._source, map(_event, events), self._narrow)


def _event(event: tuple[Any, ...]) -> Event:
    at, keys, paths, values = event[:4]
    if len(event) < 5:
        return at, keys, paths, values, (), ()
    dists, gauges = event[4]
    return at, keys, paths, values, map(dist_item, dists), gauges


def dist_item(item: tuple[str, Any]) -> DistItem:
    """``(path, Dist)`` as a distribution row: its sketch's buckets in key order."""
    path, d = item
    order = sorted(d.buckets)
    return path, d.count, d.total, d.square, d.vmin, d.vmax, order, [d.buckets[k] for k in order]


def batch_events(batch: BatchV1 | BatchV2 | BatchV3) -> list[Any]:
    """The events of a record of any version (``EventV1``/``EventV2``; version 3 expanded)."""
    return events_of(batch) if isinstance(batch, BatchV3) else list(batch.events)


def event_count(batch: BatchV1 | BatchV2 | BatchV3) -> int:
    """How many events a record carries, without expanding version 3's columns."""
    return batch.events if isinstance(batch, BatchV3) else len(batch.events)
