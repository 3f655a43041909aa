"""The traces topic's records: ``TraceBatchV1`` (msgpack), one or more executions each."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from tally.schemas.wire import WireError
from tally.traces.model import Execution, TraceBatchV1


class TraceRecord(msgspec.Struct, gc=False):
    """One finished execution waiting in the outbox, routed by its id."""

    execution: Execution
    route: str

    @classmethod
    def of(cls, execution: Execution) -> TraceRecord:
        """The record of ``execution``."""
        return cls(execution, execution.id)


class TraceCodec:
    """``RecordCodec`` for ``TraceRecord``s."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(TraceBatchV1)

    def encode(self, records: Sequence[TraceRecord]) -> bytes:
        """One record."""
        return self._encoder.encode(TraceBatchV1(self.source, [r.execution for r in records]))

    def decode(self, payload: bytes) -> list[TraceRecord]:
        """One ``TraceRecord`` per execution; ``WireError`` for anything else."""
        return [TraceRecord.of(e) for e in decode_batch(payload, self._decoder).executions]


_DECODER = msgspec.msgpack.Decoder(TraceBatchV1)


def decode_batch(payload: bytes, decoder: msgspec.msgpack.Decoder | None = None) -> TraceBatchV1:
    """A record's batch; ``WireError`` when it is not a non-empty ``TraceBatchV1``."""
    try:
        batch = (decoder or _DECODER).decode(payload)
    except msgspec.DecodeError as exc:
        raise WireError("bad_trace_record", str(exc)[:200]) from None
    if not batch.executions:
        raise WireError("empty", "no executions")
    return batch


def encoded_size(execution: Execution) -> int:
    """Bytes ``execution`` takes in a record (for tests and benchmarks)."""
    return len(msgspec.msgpack.encode(execution))
