"""Dead letters: every rejected record or event goes to a Kafka topic with its reason."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from tally.aggregator.fold import Rejected


class DeadLetters:
    """Produces rejects to the dead-letter topic; ``drain`` waits until all are acknowledged."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self._pending: list[asyncio.Future[Any]] = []

    async def send(
        self, source_topic: str, partition: int, payload: bytes | None, rejects: list[Rejected]
    ) -> None:
        """Queue the rejects of one record. A whole-record reject carries the original bytes."""
        for reject in rejects:
            headers = [
                ("reason", reject.reason.encode()),
                ("source", f"{source_topic}:{partition}:{reject.offset}".encode()),
            ]
            if reject.index < 0:
                value = payload or b""
            else:
                value = _json(
                    {
                        "reason": reject.reason,
                        "detail": reject.detail,
                        "topic": source_topic,
                        "partition": partition,
                        "offset": reject.offset,
                        "index": reject.index,
                        "event": reject.event,
                    }
                )
            headers.append(("index", str(reject.index).encode()))
            future = await self.producer.send(self.topic, value, headers=headers)
            self._pending.append(future)

    async def drain(self) -> None:
        """Wait for every queued dead letter to be acknowledged (before offsets are committed)."""
        pending, self._pending = self._pending, []
        if pending:
            await asyncio.gather(*pending)


def _json(doc: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(doc, default=repr)
    except (TypeError, orjson.JSONEncodeError):  # e.g. integers beyond 64 bits
        doc["event"] = repr(doc["event"])
        return orjson.dumps(doc, default=repr)
