"""One produce round: hand records to the producer and settle each one's fate on its own.

Error handling follows ``produce_errors.classify``: outages stop the round (the records go
back, in order), records refused as too large are resent once produce batches are smaller
or split, non-retriable refusals are counted and raised as ``Refused``.
"""

from __future__ import annotations

import asyncio
from collections import deque

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from tally.ingest.outbox.accumulator import Accumulator
from tally.ingest.outbox.packer import PendingRecord
from tally.kafka.produce_errors import Failure, Refused, Resize, classify


class Delivery:
    """Sends batches from ``accumulator`` to one topic; ``batch_bytes`` is the producer's."""

    def __init__(self, topic: str, accumulator: Accumulator) -> None:
        self.topic = topic
        self.accumulator = accumulator
        self.batch_bytes = 0  # max_batch_size of the current producer
        self.in_flight: list[tuple[PendingRecord, asyncio.Future]] = []
        self._shrink = False  # a produce batch was refused as too large this round
        self._refused_size = False  # some record was refused as too large this round

    async def ship(self, producer: AIOKafkaProducer) -> None:
        """Send pending and spooled records, oldest first, until both are empty."""
        while batch := self.accumulator.next_batch():
            await self.send(producer, batch)

    async def send(self, producer: AIOKafkaProducer, batch: list[PendingRecord]) -> None:
        """Hand ``batch`` to the producer and settle every record's fate on its own.

        A record handed over is awaited, never re-queued while the producer may still
        deliver it. A synchronous failure stops the round: that record and the ones after
        it go back, untouched, in order.
        """
        acc = self.accumulator
        todo = deque(batch)
        handed: list[tuple[PendingRecord, asyncio.Future]] = []
        stop: BaseException | None = None
        try:
            while todo:
                record = todo.popleft()
                try:
                    future = await producer.send(
                        self.topic, record.payload, partition=record.partition
                    )
                except KafkaError as exc:
                    if classify(exc) is Failure.TOO_LARGE:
                        todo.extendleft(reversed(self._too_large(record, exc)))
                        continue
                    todo.appendleft(record)
                    stop = exc
                    break
                except BaseException:
                    todo.appendleft(record)
                    raise
                handed.append((record, future))
                self.in_flight.append((record, future))
        finally:
            acc.give_back(list(todo))
        results = await asyncio.gather(*(f for _, f in handed), return_exceptions=True)
        self.in_flight.clear()
        refused_size = self._refused_size
        self._refused_size = False
        failed: list[PendingRecord] = []
        for (record, _), result in zip(handed, results, strict=True):
            if not isinstance(result, BaseException):
                acc.delivered(record)
            elif classify(result) is Failure.TOO_LARGE:
                failed.extend(self._too_large(record, result))
            else:
                failed.append(record)
                stop = stop or result
        if self._shrink:  # a shared produce batch was too large: smaller batches, then retry
            self._shrink = False
            acc.packer.lower_cap(acc.packer.cap // 2, "a produce batch was refused as too large")
            failed = [piece for record in failed for piece in acc.fit(record)]
        if refused_size:  # the idempotent producer's sequence is off after a refused batch
            acc.give_back(failed)
            raise Resize()
        acc.give_back(failed)
        if stop is not None:
            if classify(stop) is Failure.REFUSED:
                acc.counters.add("send_rejected")
                raise Refused(repr(stop)) from stop
            raise stop if isinstance(stop, KafkaError) else KafkaError(repr(stop))

    def take_in_flight(self) -> list[tuple[PendingRecord, asyncio.Future]]:
        """At stop: the records the producer still holds, with their delivery futures."""
        in_flight, self.in_flight = self.in_flight, []
        return in_flight

    def _too_large(self, record: PendingRecord, error: BaseException) -> list[PendingRecord]:
        """The broker (or producer) refused ``record``'s produce batch as too large.

        A record no larger than the producer's batch size may just have shared a batch that
        was too large: it is sent again once batches are smaller (see ``send``). A record
        alone in its batch (always so at the smallest cap) is too large itself: it is split,
        or dropped and counted when it holds one event. Returns what to send in its place.
        """
        acc = self.accumulator
        acc.counters.add("send_rejected")
        self._refused_size = True
        if len(record.payload) <= self.batch_bytes:
            self._shrink = True
            return [record]
        acc.packer.lower_cap(len(record.payload) // 2, repr(error))
        return acc.split(record)
