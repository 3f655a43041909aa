"""The background sender: drains the tracker's buffer and ships records to Kafka.

It runs in its own daemon thread with its own event loop, so neither sync nor async callers
ever wait on the network. Events are grouped by partition, packed into ``BatchV1`` records and
produced with an idempotent aiokafka producer. Records the broker does not acknowledge stay in
a bounded pending list and are retried with backoff; past that bound they go to the spool
(when configured), and past the spool's bound they are dropped and counted.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from tally.ingest.routing import Router
from tally.ingest.settings import ClientSettings
from tally.ingest.spool import Spool
from tally.ingest.stats import Counters
from tally.schemas.wire import BatchDecoder, BatchEncoder

log = logging.getLogger("tally.ingest")

# (at, keys, paths, values, route)
UNROUTED = 0xFFFFFFFF  # spooled before the partition count was known; routed on replay
Item = tuple[int, tuple[str, ...], tuple[str, ...], list, str]


@dataclass(slots=True)
class PendingRecord:
    """An encoded record not yet acknowledged by the broker."""

    partition: int
    payload: bytes
    events: int


class Sender:
    """Owns the producer thread. ``buffer`` is shared with ``Tracker.track`` (append-only)."""

    def __init__(self, settings: ClientSettings, buffer: deque, counters: Counters) -> None:
        self.settings = settings
        self.buffer = buffer
        self.counters = counters
        self.pending: deque[PendingRecord] = deque()
        self.pending_bytes = 0
        self._flush_requests: deque[concurrent.futures.Future[None]] = deque()
        self._stopping = threading.Event()
        self._producer: AIOKafkaProducer | None = None
        self._router: Router | None = None
        self._in_flight_bytes = 0
        self._last_drop_log = 0.0
        self._wake: asyncio.Event | None = None
        self._ship_wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._spool = (
            Spool(settings.spool_dir, settings.source, settings.spool_bytes)
            if settings.spool_dir
            else None
        )
        self._encoder = BatchEncoder(settings.source)
        self._thread = threading.Thread(target=self._run, name="tally-sender", daemon=True)
        self._thread.start()

    # -- called from other threads -------------------------------------------------------

    def request_flush(self) -> concurrent.futures.Future[None]:
        """A future that completes once everything buffered before this call is acknowledged."""
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._flush_requests.append(future)
        self._poke()
        return future

    def stop(self, timeout: float) -> bool:
        """Deliver what is buffered (up to ``timeout``), spool the rest, stop; True if clean."""
        self._stopping.set()
        self._poke()
        self._thread.join(timeout + 5)
        return not self._thread.is_alive()

    @property
    def spooled(self) -> int:
        """Records currently waiting in the spool."""
        return len(self._spool) if self._spool else 0

    def _poke(self) -> None:
        loop = self._loop
        if loop is not None:
            for event in (self._wake, self._ship_wake):
                if event is not None:
                    with contextlib.suppress(RuntimeError):
                        loop.call_soon_threadsafe(event.set)

    # -- the sender thread -----------------------------------------------------------------

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._ship_wake = asyncio.Event()
        shipper = asyncio.create_task(self._ship_forever())
        while not self._stopping.is_set():
            self._encode_buffer()
            await self._sleep()
        self._encode_buffer()
        final = asyncio.wrap_future(self.request_flush())
        with contextlib.suppress(Exception):
            await asyncio.wait_for(final, self.settings.close_timeout_s)
        shipper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await shipper
        await self._shutdown()

    async def _ship_forever(self) -> None:
        """Keep a producer connected and ship pending and spooled records, with backoff."""
        backoff = 0.1
        while True:
            try:
                if self._producer is None:
                    self._producer = await self._start_producer()
                    partitions = await self._producer.partitions_for(self.settings.topic)
                    if not partitions:
                        raise KafkaError(f"topic {self.settings.topic!r} has no partitions")
                    self._router = Router(len(partitions))
                flushes = self._take_flush_requests()
                try:
                    self._encode_buffer()
                    await self._send_pending(self._producer)
                    await self._send_spooled(self._producer)
                except BaseException:
                    self._flush_requests.extendleft(reversed(flushes))
                    raise
                for future in flushes:
                    _resolve(future)
                backoff = 0.1
            except (KafkaError, OSError) as exc:
                self.counters.add("send_failures")
                log.warning("tally: broker unavailable (%s); retrying in %.1fs", exc, backoff)
                await self._drop_producer()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            except Exception:  # a bug must not silently stop delivery: log, back off, go on
                self.counters.add("internal_errors")
                log.exception("tally: sender error; retrying in %.1fs", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if not self.pending and not self._flush_requests:
                await self._wait(self._ship_wake)

    async def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()

    async def _start_producer(self) -> AIOKafkaProducer:
        s = self.settings
        producer = AIOKafkaProducer(
            bootstrap_servers=s.bootstrap_servers,
            client_id=f"tally-client-{s.source}",
            compression_type=s.compression,
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            max_batch_size=1024 * 1024,
            max_request_size=4 * 1024 * 1024,
            request_timeout_ms=s.request_timeout_ms,
            **s.security.aiokafka_kwargs(),
        )
        try:
            await producer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        return producer

    def _take_flush_requests(self) -> list[concurrent.futures.Future[None]]:
        taken = []
        while self._flush_requests:
            taken.append(self._flush_requests.popleft())
        return taken

    def _idle(self) -> bool:
        return not self.buffer and not self.pending and not self._flush_requests

    async def _sleep(self) -> None:
        assert self._wake is not None
        await self._wait(self._wake)

    async def _wait(self, event: asyncio.Event | None) -> None:
        """Wait for ``event`` or one linger period, whichever comes first."""
        assert event is not None
        # asyncio.timeout, not wait_for: in 3.11 wait_for can swallow the shipper's
        # cancellation when it races with the event being set, stalling close().
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.linger_ms / 1000):
                await event.wait()
        event.clear()

    def _encode_buffer(self) -> None:
        """Move everything buffered now into encoded pending records, grouped by partition.

        Runs even while the broker is down, so memory stays bounded by ``pending_bytes``.
        """
        count = len(self.buffer)
        router = self._router
        if router is None:
            # Never reached the broker yet: keep memory bounded by spooling unrouted records.
            if self._spool is not None and count >= self.settings.buffer_events // 2:
                self._spool_unrouted()
            return
        if not count:
            return
        by_partition: dict[int, list[Item]] = defaultdict(list)
        popleft, partition_of = self.buffer.popleft, router.partition
        for _ in range(count):
            item = popleft()
            by_partition[partition_of(item[4])].append(item)
        self.counters.add("drained", count)
        step = self.settings.record_events
        for partition, items in by_partition.items():
            for start in range(0, len(items), step):
                chunk = items[start : start + step]
                payload = self._encoder.encode(item[:4] for item in chunk)
                self._add_pending(PendingRecord(partition, payload, len(chunk)))
        if self._ship_wake is not None:
            self._ship_wake.set()

    def _add_pending(self, record: PendingRecord) -> None:
        held = self.pending_bytes + self._in_flight_bytes
        if held + len(record.payload) > self.settings.pending_bytes:
            self._spool_or_drop(record)
            return
        self.pending.append(record)
        self.pending_bytes += len(record.payload)

    def _spool_or_drop(self, record: PendingRecord) -> None:
        if self._spool is not None and self._spool.put(record.partition, record.payload):
            self.counters.add("spooled_records")
            return
        reason = "dropped_spool_full" if self._spool is not None else "dropped_overflow"
        self.counters.add(reason, record.events)
        now = time.monotonic()
        if now - self._last_drop_log > 10:
            self._last_drop_log = now
            log.error("tally: %s: events dropped (see TrackerStats.%s)", reason, reason)

    async def _send_pending(self, producer: AIOKafkaProducer) -> None:
        """Produce pending records, oldest first, and wait for their acknowledgements."""
        while self.pending:
            records = [self.pending.popleft() for _ in range(min(256, len(self.pending)))]
            self.pending_bytes -= sum(len(r.payload) for r in records)
            self._in_flight_bytes = sum(len(r.payload) for r in records)
            try:
                futures = [
                    await producer.send(self.settings.topic, r.payload, partition=r.partition)
                    for r in records
                ]
                results = await asyncio.gather(*futures, return_exceptions=True)
            except BaseException:
                self._requeue(records)
                raise
            finally:
                self._in_flight_bytes = 0
            failed = [
                r for r, res in zip(records, results, strict=True) if isinstance(res, BaseException)
            ]
            for record, res in zip(records, results, strict=True):
                if not isinstance(res, BaseException):
                    self.counters.add("sent_records")
                    self.counters.add("sent_events", record.events)
            if failed:
                self._requeue(failed)
                raise KafkaError(f"{len(failed)} records not acknowledged")

    def _requeue(self, records: list[PendingRecord]) -> None:
        self.pending.extendleft(reversed(records))
        self.pending_bytes += sum(len(r.payload) for r in records)

    async def _send_spooled(self, producer: AIOKafkaProducer) -> None:
        """Replay spooled records, oldest first, once the broker takes records again."""
        if self._spool is None:
            return
        while batch := self._spool.peek(64):
            for record in batch:
                if record.partition == UNROUTED:
                    self._reroute(record.payload)
                    self._spool.remove(record)
                    continue
                future = await producer.send(
                    self.settings.topic, record.payload, partition=record.partition
                )
                await future
                self._spool.remove(record)
                self.counters.add("unspooled_records")
                self.counters.add("sent_records")
            await self._send_pending(producer)

    def _reroute(self, payload: bytes) -> None:
        """Split a record spooled before routing was known into per-partition records."""
        batch = BatchDecoder().decode(payload)
        for event in batch.events:
            keys = tuple(batch.strings[i] for i in batch.keysets[event.keyset])
            paths = tuple(batch.strings[i] for i in batch.shapes[event.shape])
            self.buffer.append((event.at, keys, paths, event.values, keys[-1]))
        self._encode_buffer()

    async def _shutdown(self) -> None:
        """Leave nothing behind silently: unsent records go to the spool or are counted."""
        while self.pending:
            self._spool_or_drop(self.pending.popleft())
        self.pending_bytes = 0
        if self.buffer:
            self._spool_unrouted()
        for future in self._take_flush_requests():
            _resolve(future, TimeoutError("tally client stopped before delivery"))
        await self._drop_producer()
        if self._spool is not None:
            self._spool.close()

    def _spool_unrouted(self) -> None:
        """Events buffered at stop without partition metadata (the broker was never reached)."""
        items = [self.buffer.popleft() for _ in range(len(self.buffer))]
        self.counters.add("drained", len(items))
        step = self.settings.record_events
        for start in range(0, len(items), step):
            chunk = items[start : start + step]
            payload = self._encoder.encode(item[:4] for item in chunk)
            self._spool_or_drop(PendingRecord(UNROUTED, payload, len(chunk)))


def _resolve(future: concurrent.futures.Future[None], error: Exception | None = None) -> None:
    """Complete a flush future unless its waiter already gave up on it."""
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
