"""Dead letters: every rejected record or event goes to a Kafka topic with its reason.

A dead letter is queued in memory first (which cannot fail), then sent; it stays queued until
the broker acknowledged it, so offsets are never committed past one that was lost. One that the
client or the broker finds too large is truncated, with a ``truncated`` header holding its
original size, rather than blocking the partition forever.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError

from tally.engine.protocols import Rejected

# Room for the headers and the record framing within a size limit.
OVERHEAD = 512
MIN_BYTES = 1024
TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError)


@dataclass
class _Letter:
    value: bytes
    headers: list[tuple[str, bytes]]
    future: asyncio.Future[Any] | None = None
    original: int = 0


class DeadLetters:
    """Produces rejects to the dead-letter topic; ``drain`` waits until all are acknowledged."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, max_bytes: int = 1_000_000) -> None:
        self.producer = producer
        self.topic = topic
        self.max_bytes = max(max_bytes, MIN_BYTES)
        self.failing = False
        self.nbytes = 0  # bytes queued and not yet acknowledged
        self._pending: list[_Letter] = []
        self._draining = asyncio.Lock()  # partitions flush concurrently and share this queue

    def __len__(self) -> int:
        return len(self._pending)

    def queue(
        self, source_topic: str, partition: int, payload: bytes | None, rejects: list[Rejected]
    ) -> None:
        """Queue the rejects of one record. A whole-record reject carries the original bytes."""
        for reject in rejects:
            headers = [
                ("reason", reject.reason.encode()),
                ("source", f"{source_topic}:{partition}:{reject.offset}".encode()),
                ("index", str(reject.index).encode()),
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
            letter = _Letter(value, headers, original=len(value))
            _fit(letter, self.max_bytes)
            self._pending.append(letter)
            self.nbytes += len(letter.value)

    async def dispatch(self) -> None:
        """Hand every unsent dead letter to the producer; raises if the producer refuses one."""
        try:
            for letter in self._pending:
                if letter.future is None:
                    letter.future = await self._send(letter)
        except Exception:
            self.failing = True
            raise
        self.failing = False

    async def drain(self) -> None:
        """Send and wait until every queued dead letter is acknowledged (before a commit).

        A failed one stays queued and is sent again by the next call (truncated if it was
        too large), so a retry can never find the list empty while a letter was lost.
        """
        async with self._draining:
            await self._drain()

    async def _drain(self) -> None:
        await self.dispatch()
        pending = [letter for letter in self._pending if letter.future is not None]
        results = await asyncio.gather(*(p.future for p in pending), return_exceptions=True)
        failed: BaseException | None = None
        for letter, result in zip(pending, results, strict=True):
            if isinstance(result, BaseException):
                letter.future = None
                if isinstance(result, TOO_LARGE):
                    _fit(letter, max(MIN_BYTES, len(letter.value) // 4))
                failed = failed or result
            else:
                self._pending.remove(letter)
        self.nbytes = sum(len(letter.value) for letter in self._pending)
        if failed is not None:
            self.failing = True
            raise failed
        self.failing = False

    def discard(self) -> None:
        """Forget every queued dead letter (their records will be read again by a replay)."""
        self._pending.clear()
        self.nbytes = 0

    async def _send(self, letter: _Letter) -> asyncio.Future[Any]:
        try:
            return await self.producer.send(self.topic, letter.value, headers=letter.headers)
        except TOO_LARGE:
            _fit(letter, max(MIN_BYTES, len(letter.value) // 4))
            return await self.producer.send(self.topic, letter.value, headers=letter.headers)


def _fit(letter: _Letter, limit: int) -> None:
    """Truncate ``letter`` to fit ``limit`` bytes, saying so in a ``truncated`` header."""
    room = max(0, limit - OVERHEAD)
    if len(letter.value) <= room:
        return
    letter.value = letter.value[:room]
    letter.headers = [h for h in letter.headers if h[0] != "truncated"]
    letter.headers.append(("truncated", str(letter.original).encode()))


def _json(doc: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(doc, default=repr)
    except (TypeError, orjson.JSONEncodeError):  # e.g. integers beyond 64 bits
        doc["event"] = repr(doc["event"])
        return orjson.dumps(doc, default=repr)
