"""Reading the dead-letter topic and producing raw records, for the fault tests."""

from __future__ import annotations

import time
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


@dataclass
class DeadLetter:
    """One dead letter: its headers and value."""

    headers: dict[str, bytes]
    value: bytes

    @property
    def reason(self) -> str:
        return self.headers["reason"].decode()

    @property
    def source(self) -> str:
        return self.headers["source"].decode()


async def read_dead_letters(
    bootstrap: str, topic: str, want: int, timeout: float
) -> list[DeadLetter]:
    """The dead letters of ``topic`` from the start, once ``want`` arrived (or ``timeout``)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    out: list[DeadLetter] = []
    try:
        deadline = time.monotonic() + timeout
        while len(out) < want and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                out.extend(DeadLetter(dict(r.headers), r.value or b"") for r in records)
    finally:
        await consumer.stop()
    return out


async def produce_raw(
    bootstrap: str, topic: str, records: list[tuple[int, bytes, int | None]]
) -> list[int]:
    """Produce ``(partition, value, timestamp_ms)``; returns the offsets, in order."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=4 * 2**20)
    await producer.start()
    try:
        offsets = []
        for partition, value, timestamp_ms in records:
            meta = await producer.send_and_wait(
                topic, value, partition=partition, timestamp_ms=timestamp_ms
            )
            offsets.append(meta.offset)
        return offsets
    finally:
        await producer.stop()
