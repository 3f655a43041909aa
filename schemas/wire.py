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
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

SCHEMA_VERSION = 1

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

    def encode(
        self, events: Iterable[tuple[int, Sequence[str], Sequence[str], list[Number]]]
    ) -> bytes:
        """Encode ``(at, keys, paths, values)`` tuples into one record payload."""
        strings: dict[str, int] = {}
        keysets: dict[tuple[str, ...], int] = {}
        shapes: dict[tuple[str, ...], int] = {}
        out: list[EventV1] = []
        for at, keys, paths, values in events:
            keys_t = tuple(keys)
            ks = keysets.get(keys_t)
            if ks is None:
                ks = keysets[keys_t] = len(keysets)
            paths_t = tuple(paths)
            sh = shapes.get(paths_t)
            if sh is None:
                sh = shapes[paths_t] = len(shapes)
            out.append(EventV1(at, ks, sh, values))
        for table in (keysets, shapes):
            for names in table:
                for name in names:
                    if name not in strings:
                        strings[name] = len(strings)
        batch = BatchV1(
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
        self._strict = msgspec.msgpack.Decoder(BatchV1)
        self._loose = msgspec.msgpack.Decoder(LooseBatchV1)
        self._any = msgspec.msgpack.Decoder()

    def decode(self, payload: bytes) -> BatchV1:
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
        if raw[0] != SCHEMA_VERSION:
            return WireError("unknown_version", f"schema version {raw[0]!r}")
        return WireError("malformed_fields", str(exc))
