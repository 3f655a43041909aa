"""The versioned wire format: one Kafka record carries one msgpack-encoded ``BatchV1``.

Layout (msgpack arrays, no field names on the wire):

    [1, source, strings, keysets, shapes, events]
    event = [at, keyset, shape, values]

- ``1`` is the schema version (a msgspec tag); a new version is a new tagged Struct.
- ``strings`` is the batch's string table; every key and path is sent once per batch.
- ``keysets`` are lists of string indices: the metric keys an event fans out to.
- ``shapes`` are lists of string indices: the dotted paths of an event's values, in order.
- ``at`` is unix seconds; ``values[i]`` belongs to path ``shapes[shape][i]``.

Evolution rules: add fields only at the end, with defaults; never reorder or retype a field.

Version 2 (``BatchV2``, tag 2) adds distributions and gauges to each event:

    [2, source, strings, keysets, shapes, events]
    event = [at, keyset, shape, values, dists, gauges]
    dist  = [path, count, sum, square, min, max, bucket_keys, bucket_counts]
    gauge = [path, value, at_ms]

``path`` is an index into ``strings``; buckets are those of ``schemas/sketch.py``. A client
writes version 1 for a batch without distributions or gauges, so aggregators that only know
version 1 keep reading what they can, and dead-letter (``unknown_version``) what they cannot,
instead of silently dropping the new values.

Version 3 (``BatchV3``, tag 3) is columnar: the same tables, then one typed array per field
instead of one msgpack array per event (``schemas/wire_columns.py`` writes and reads them):

    [3, source, strings, keysets, shapes, events,
     at, keyset, shape, value_offsets, values,
     dist_offsets, dist_path, dist_count, dist_sum, dist_square, dist_min, dist_max,
     bucket_offsets, bucket_keys, bucket_counts,
     gauge_offsets, gauge_path, gauge_value, gauge_at_ms]

Every column after ``events`` (the event count) is a msgpack bin holding a little-endian array
(``COLUMN_TYPES``: int32, int64 or float64). ``*_offsets`` hold ``events + 1`` (or, for
buckets, distribution rows + 1) monotone positions: event ``i``'s values are
``values[value_offsets[i]:value_offsets[i + 1]]``, its distributions and gauges likewise; an
empty ``dist_offsets`` / ``gauge_offsets`` means no event has any. The aggregator reads each
column with ``numpy.frombuffer`` (no Python object per event) and folds it with array
operations. A version above 3 is dead-lettered (``unknown_version``); a version-3 record whose
columns do not fit this layout is dead-lettered whole (``malformed_columns`` and the reasons
of ``schemas/wire_columns.py``).

Version 4 (``BatchV4``, tag 4) is version 3 with narrow columns: one more field at the end,
``dtypes``, a string of one ``array`` typecode per column (``COLUMN_TYPES`` order) saying how
that column is stored. An index, offset, count or time column takes the smallest integer type
that holds its values (``b B h H i I q``, within what its version-3 type holds); a float column
(values, distribution sums and bounds, gauge values) is stored as integers when every value is
integral and within +-2**53 (fixed-size, or ``v``: zigzag LEB128 varints, one to nine bytes
each, when that is smaller), else as float64 (``d``). ``value_offsets`` may be empty: each
event then has as many values as its shape has paths. Version 3 records stay readable as they
are; an aggregator that predates version 4 dead-letters it as ``unknown_version`` instead of
misreading narrow columns. A ``dtypes`` of the wrong length or with a type its column cannot
take is dead-lettered whole (``bad_dtype``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

SCHEMA_VERSION = 1
SCHEMA_VERSIONS = (1, 2, 3, 4)

Number = int | float


class EventV1(msgspec.Struct, array_like=True, gc=False, frozen=True):
    """One tracked event: its time, the keys it fans out to, its paths and values."""

    at: int
    keyset: int
    shape: int
    values: list[Number]


class BatchV1(msgspec.Struct, array_like=True, gc=False, frozen=True, tag=1):
    """Several events with shared string, keyset and shape tables."""

    source: str
    strings: list[str]
    keysets: list[list[int]]
    shapes: list[list[int]]
    events: list[EventV1]


class DistV2(msgspec.Struct, array_like=True, gc=False, frozen=True):
    """One distribution of an event: a sketch of one or more samples at path ``strings[path]``."""

    path: int
    count: int
    sum: float
    square: float
    min: float
    max: float
    keys: list[int]
    counts: list[int]


class GaugeV2(msgspec.Struct, array_like=True, gc=False, frozen=True):
    """One gauge reading of an event: ``value`` at ``at_ms`` (unix milliseconds, required)."""

    path: int
    value: float
    at_ms: int


class EventV2(msgspec.Struct, array_like=True, gc=False, frozen=True):
    """``EventV1`` plus distributions and gauges (``shape`` may name no paths)."""

    at: int
    keyset: int
    shape: int
    values: list[Number]
    dists: list[DistV2] = []
    gauges: list[GaugeV2] = []


class BatchV2(msgspec.Struct, array_like=True, gc=False, frozen=True, tag=2):
    """``BatchV1`` whose events may carry distributions and gauges."""

    source: str
    strings: list[str]
    keysets: list[list[int]]
    shapes: list[list[int]]
    events: list[EventV2]


class BatchV3(msgspec.Struct, array_like=True, gc=False, frozen=True, tag=3):
    """Events as typed columns (see the module docstring; ``wire_columns`` reads and writes)."""

    source: str
    strings: list[str]
    keysets: list[list[int]]
    shapes: list[list[int]]
    events: int
    at: memoryview
    keyset: memoryview
    shape: memoryview
    value_offsets: memoryview
    values: memoryview
    dist_offsets: memoryview
    dist_path: memoryview
    dist_count: memoryview
    dist_sum: memoryview
    dist_square: memoryview
    dist_min: memoryview
    dist_max: memoryview
    bucket_offsets: memoryview
    bucket_keys: memoryview
    bucket_counts: memoryview
    gauge_offsets: memoryview
    gauge_path: memoryview
    gauge_value: memoryview
    gauge_at_ms: memoryview


# Each column of ``BatchV3`` and its element type (``array`` typecodes; little-endian).
COLUMN_TYPES: tuple[tuple[str, str], ...] = (
    ("at", "q"), ("keyset", "i"), ("shape", "i"), ("value_offsets", "i"), ("values", "d"),
    ("dist_offsets", "i"), ("dist_path", "i"), ("dist_count", "q"), ("dist_sum", "d"),
    ("dist_square", "d"), ("dist_min", "d"), ("dist_max", "d"), ("bucket_offsets", "i"),
    ("bucket_keys", "i"), ("bucket_counts", "q"), ("gauge_offsets", "i"), ("gauge_path", "i"),
    ("gauge_value", "d"), ("gauge_at_ms", "q"),
)  # fmt: skip

# The types each column may be stored as in version 4: integer types its version-3 type holds
# exactly (and integers for a float column).
NARROW_TYPES = {"i": "bBhHi", "q": "bBhHiIq", "d": "bBhHiIqdv"}


class BatchV4(BatchV3, tag=4):
    """``BatchV3`` whose columns are stored as ``dtypes`` says (one typecode per column)."""

    dtypes: str


Batch = BatchV1 | BatchV2 | BatchV3 | BatchV4


class LooseEventV1(msgspec.Struct, array_like=True, gc=False):
    """Salvage view of an event: any field may hold anything (used only for bad batches)."""

    at: Any = None
    keyset: Any = None
    shape: Any = None
    values: Any = None


class LooseBatchV1(msgspec.Struct, array_like=True, gc=False, tag=1):
    """Salvage view of a batch whose strict decode failed."""

    source: Any = None
    strings: Any = None
    keysets: Any = None
    shapes: Any = None
    events: list[Any] = []


class WireError(ValueError):
    """A record that cannot be decoded at all; ``reason`` is a short, stable label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class BatchEncoder:
    """Builds ``BatchV1`` records from flattened events, interning strings, keysets and shapes.

    Not thread-safe: one encoder per sending thread.
    """

    def __init__(self, source: str) -> None:
        self._source = source
        self._encoder = msgspec.msgpack.Encoder()

    def encode(self, events: Iterable[tuple[Any, ...]]) -> bytes:
        """Encode ``(at, keys, paths, values[, kinds])`` tuples into one record payload.

        ``kinds`` is ``(dists, gauges)`` as ``ingest.flatten.flatten_all`` returns them; a
        batch with any of them is written as version 2, else as version 1.
        """
        strings: dict[str, int] = {}
        keysets: dict[tuple[str, ...], int] = {}
        shapes: dict[tuple[str, ...], int] = {}
        out: list[Any] = []
        extended = False
        for event in events:
            at, keys, paths, values = event[:4]
            if len(event) > 4 and not extended:
                extended = True
                out = [EventV2(e.at, e.keyset, e.shape, e.values) for e in out]
            keys_t = tuple(keys)
            ks = keysets.get(keys_t)
            if ks is None:
                ks = keysets[keys_t] = len(keysets)
            paths_t = tuple(paths)
            sh = shapes.get(paths_t)
            if sh is None:
                sh = shapes[paths_t] = len(shapes)
            if not extended:
                out.append(EventV1(at, ks, sh, values))
                continue
            dists: list[DistV2] = []
            gauges: list[GaugeV2] = []
            if len(event) > 4:
                for path, d in event[4][0]:
                    keys_ = sorted(d.buckets)
                    dists.append(
                        DistV2(
                            strings.setdefault(path, len(strings)),
                            d.count, d.total, d.square, d.vmin, d.vmax,
                            keys_, [d.buckets[k] for k in keys_],
                        )
                    )  # fmt: skip
                for path, value, at_ms in event[4][1]:
                    gauges.append(GaugeV2(strings.setdefault(path, len(strings)), value, at_ms))
            out.append(EventV2(at, ks, sh, values, dists, gauges))
        for table in (keysets, shapes):
            for names in table:
                for name in names:
                    if name not in strings:
                        strings[name] = len(strings)
        kind = BatchV2 if extended else BatchV1
        batch = kind(
            source=self._source,
            strings=list(strings),
            keysets=[[strings[k] for k in keys] for keys in keysets],
            shapes=[[strings[p] for p in paths] for paths in shapes],
            events=out,
        )
        return self._encoder.encode(batch)


class BatchDecoder:
    """Decodes record payloads; raises ``WireError`` with a stable reason when it cannot."""

    def __init__(self) -> None:
        self._strict = msgspec.msgpack.Decoder(Batch)
        self._loose = msgspec.msgpack.Decoder(LooseBatchV1)
        self._any = msgspec.msgpack.Decoder()

    def decode(self, payload: bytes) -> BatchV1 | BatchV2 | BatchV3 | BatchV4:
        """Strict decode: every field has its declared type."""
        try:
            return self._strict.decode(payload)
        except msgspec.ValidationError as exc:
            raise self._classify(payload, exc) from None
        except (msgspec.DecodeError, ValueError) as exc:  # e.g. invalid UTF-8 in a string
            raise WireError("undecodable", str(exc)) from None

    def decode_any(self, payload: bytes) -> Any:
        """Schema-less decode (for salvaging); raises ``WireError`` if not msgpack at all."""
        try:
            return self._any.decode(payload)
        except (msgspec.DecodeError, ValueError) as exc:
            raise WireError("undecodable", str(exc)) from None

    def decode_loose(self, payload: bytes) -> LooseBatchV1:
        """Lenient decode of a version-1 batch whose strict decode failed on some field."""
        try:
            return self._loose.decode(payload)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise WireError("malformed_batch", str(exc)) from None

    def _classify(self, payload: bytes, exc: Exception) -> WireError:
        try:
            raw = self.decode_any(payload)
        except WireError as error:
            return error
        if not isinstance(raw, list) or not raw:
            return WireError("malformed_batch", "payload is not a msgpack array")
        if raw[0] not in SCHEMA_VERSIONS or type(raw[0]) is not int:
            return WireError("unknown_version", f"schema version {raw[0]!r}")
        if raw[0] >= 3:
            return WireError("malformed_columns", str(exc))
        return WireError("malformed_fields", str(exc))
