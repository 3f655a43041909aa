"""The background sender: drains the tracker's buffer and ships records to Kafka.

It runs in its own daemon thread with its own event loop, so neither sync nor async callers
ever wait on the network. Events are grouped by partition, packed into ``BatchV1`` records of
at most ``record_events`` events and ``record_bytes`` bytes, and produced with an idempotent
aiokafka producer. Records the broker does not acknowledge stay in a bounded pending list and
are retried with backoff; past that bound they go to the spool (when configured), and past the
spool's bound they are dropped and counted.

Every record's fate is tracked on its own: once handed to the producer, a record is awaited
until the broker acknowledges or fails it, and only a failed record is sent again. Pending and
spooled records are sent together, oldest first (``born``), so delivery follows arrival.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import socket
import threading
import time
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from tally.ingest.codec import MetricCodec, RecordCodec
from tally.ingest.produce_errors import Failure, Refused, Resize, classify
from tally.ingest.routing import Router
from tally.ingest.settings import ClientSettings
from tally.ingest.spool import Spool, SpooledRecord
from tally.ingest.stats import Counters
from tally.schemas.wire import WireError

log = logging.getLogger("tally.ingest")

# (at, keys, paths, values, route)
UNROUTED = 0xFFFFFFFF  # spooled before the partition count was known; routed on replay
Item = tuple[int, tuple[str, ...], tuple[str, ...], list, str]
Event = tuple[int, Sequence[str], Sequence[str], list]
MIN_RECORD_BYTES = 1024
BATCH_RECORDS = 256  # records handed to the producer per round


@dataclass(slots=True)
class PendingRecord:
    """An encoded record not yet acknowledged by the broker (``spooled``: its spool file)."""

    partition: int
    payload: bytes
    events: int
    born: int
    spooled: SpooledRecord | None = None


class Sender:
    """Owns the producer thread. ``buffer`` is shared with ``Tracker.track`` (append-only)."""

    def __init__(
        self,
        settings: ClientSettings,
        source: str,
        buffer: deque,
        counters: Counters,
        codec: RecordCodec | None = None,
    ) -> None:
        self.settings = settings
        self.source = source
        self.pid = os.getpid()
        self.buffer = buffer
        self.counters = counters
        self.pending: deque[PendingRecord] = deque()
        self.pending_bytes = 0
        self._record_cap = settings.record_bytes  # lowered when the broker refuses sizes
        self._batch_bytes = 0  # max_batch_size of the current producer
        self._shrink = False  # a produce batch was refused as too large this round
        self._refused_size = False  # some record was refused as too large this round
        self._flush_requests: deque[concurrent.futures.Future[None]] = deque()
        self._stopping = threading.Event()
        self._producer: AIOKafkaProducer | None = None
        self._router: Router | None = None
        self._in_flight: list[tuple[PendingRecord, asyncio.Future]] = []
        self._in_flight_bytes = 0
        self._last_born = 0
        self._last_drop_log = 0.0
        self._wake: asyncio.Event | None = None
        self._ship_wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._spool = (
            Spool(settings.spool_dir, source, settings.spool_bytes) if settings.spool_dir else None
        )
        self._codec: RecordCodec = codec or MetricCodec(source)
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

    def forget_after_fork(self) -> None:
        """In a forked child: this sender's thread is gone; release what the child inherited."""
        if self._spool is not None:
            self._spool.forget_after_fork()

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
        with asyncio.Runner(loop_factory=SenderLoop) as runner:
            runner.run(self._main())

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
                    await self._ship(self._producer)
                except BaseException:
                    self._flush_requests.extendleft(reversed(flushes))
                    raise
                for future in flushes:
                    _resolve(future)
                backoff = 0.1
            except Resize:  # the producer's batches must shrink: reconnect, no backoff
                await self._drop_producer()
                continue
            except Refused as exc:  # not an outage: the connection is fine, the answer is no
                log.error(
                    "tally: the broker refused records with a non-retriable error (%s); they "
                    "are kept and retried in %.1fs (see TrackerStats.send_rejected)",
                    exc,
                    backoff,
                )
                await self._drop_producer()  # a refused batch leaves its sequence numbers used
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            except (KafkaError, OSError) as exc:
                self.counters.add("send_failures")
                log.warning("tally: broker unavailable (%r); retrying in %.1fs", exc, backoff)
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

    async def _drop_producer(self, timeout: float | None = None) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(timeout):
                    await producer.stop()

    async def _start_producer(self) -> AIOKafkaProducer:
        s = self.settings
        # At the smallest cap, one record per produce batch: a refusal then names its record.
        alone = self._record_cap <= MIN_RECORD_BYTES
        self._batch_bytes = 1 if alone else self._record_cap + 1024
        producer = AIOKafkaProducer(
            bootstrap_servers=s.bootstrap_servers,
            client_id=f"tally-client-{self.source}",
            compression_type=s.compression,
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            # A produce batch never holds more than one record's worth of bytes, so what
            # reaches the broker stays under record_bytes (+ headers) whatever is batched.
            max_batch_size=self._batch_bytes,
            max_request_size=max(4 * 1024 * 1024, 2 * s.record_bytes),
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

    # -- packing -----------------------------------------------------------------------------

    def _born(self) -> int:
        """A strictly increasing time stamp (ns) ordering records by when they were made."""
        self._last_born = max(time.time_ns(), self._last_born + 1)
        return self._last_born

    def _pack(self, partition: int, events: Sequence[Event], born: int) -> list[PendingRecord]:
        """Encode ``events`` into records of at most ``record_events`` events and the byte cap.

        A chunk that encodes too large is split into proportionally smaller chunks; a single
        event is never split (``track`` refuses events that cannot fit ``record_bytes``).
        """
        step = self.settings.record_events
        todo = [events[i : i + step] for i in range(0, len(events), step)][::-1]
        records = []
        while todo:
            chunk = todo.pop()
            try:
                payload = self._codec.encode(chunk)
            except Exception as exc:  # never lose the chunk: find the events at fault
                records.extend(self._isolate(partition, chunk, born, todo, exc))
                continue
            if len(payload) <= self._record_cap or len(chunk) == 1:
                records.append(PendingRecord(partition, payload, len(chunk), born))
                continue
            parts = min(len(chunk), max(2, -(-len(payload) * 5 // (self._record_cap * 4))))
            size = -(-len(chunk) // parts)
            todo.extend(chunk[i : i + size] for i in reversed(range(0, len(chunk), size)))
        return records

    def _isolate(
        self,
        partition: int,
        chunk: Sequence[Event],
        born: int,
        todo: list[Sequence[Event]],
        error: Exception,
    ) -> list[PendingRecord]:
        """``chunk`` failed to encode: drop (and count) only the events that fail alone.

        The others go back to ``todo`` to be packed again; if every event encodes alone,
        each becomes its own record. Returns the records made here.
        """
        good: list[Event] = []
        alone: list[PendingRecord] = []
        for event in chunk:
            try:
                payload = self._codec.encode([event])
            except Exception as exc:
                self._unencodable(exc)
                continue
            good.append(event)
            alone.append(PendingRecord(partition, payload, 1, born))
        if len(good) == len(chunk):  # only the whole chunk fails: one record per event
            log.error("tally: a record failed to encode (%r); sent event by event", error)
            return alone
        if good:
            todo.append(good)
        return []

    def _unencodable(self, error: Exception) -> None:
        """One event the sender cannot encode or route: dropped alone, counted, logged."""
        self.counters.add("dropped_unencodable")
        now = time.monotonic()
        if now - self._last_drop_log > 10:
            self._last_drop_log = now
            log.error(
                "tally: an event could not be encoded (%r); it was dropped, the rest of its "
                "record is sent (see TrackerStats.dropped_unencodable)",
                error,
            )

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
        by_partition: dict[int, list[Event]] = defaultdict(list)
        popleft, partition_of = self.buffer.popleft, router.partition
        for _ in range(count):
            item = popleft()
            try:
                partition = partition_of(item[-1])
            except Exception as exc:  # a routing key that cannot be hashed: this event only
                self._unencodable(exc)
                continue
            by_partition[partition].append(item[:-1])
        self.counters.add("drained", count)
        born = self._born()
        for partition, events in by_partition.items():
            for record in self._pack(partition, events, born):
                self._add_pending(record)
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
        if record.spooled is not None:
            return  # still in the spool, where it came from
        if self._spool is not None and self._spool.put(
            record.partition, record.payload, record.born
        ):
            self.counters.add("spooled_records")
            return
        reason = "dropped_spool_full" if self._spool is not None else "dropped_overflow"
        self.counters.add(reason, record.events)
        now = time.monotonic()
        if now - self._last_drop_log > 10:
            self._last_drop_log = now
            log.error("tally: %s: events dropped (see TrackerStats.%s)", reason, reason)

    # -- shipping ----------------------------------------------------------------------------

    async def _ship(self, producer: AIOKafkaProducer) -> None:
        """Send pending and spooled records, oldest first, until both are empty."""
        while batch := self._next_batch():
            await self._send(producer, batch)

    def _next_batch(self) -> list[PendingRecord]:
        """Up to ``BATCH_RECORDS`` records, merging pending and spooled ones by age."""
        spooled = self._spooled_heads(64)
        budget = max(self.settings.record_bytes, 8 * 1024 * 1024)
        batch: list[PendingRecord] = []
        taken, index = 0, 0
        while len(batch) < BATCH_RECORDS and taken < budget:
            from_spool = index < len(spooled)
            if from_spool and self.pending and self.pending[0].born < spooled[index].born:
                from_spool = False
            if from_spool:
                record = spooled[index]
                index += 1
            elif self.pending and (index < len(spooled) or len(spooled) < 64):
                record = self.pending.popleft()
                self.pending_bytes -= len(record.payload)
                self._in_flight_bytes += len(record.payload)
            else:
                break  # more spooled records may be older than the next pending one
            batch.append(record)
            taken += len(record.payload)
        return batch

    def _spooled_heads(self, limit: int) -> list[PendingRecord]:
        """The oldest spooled records, validated; unrouted ones are routed first (on disk)."""
        spool = self._spool
        heads: list[PendingRecord] = []
        while spool is not None and len(spool) and not heads:
            routed = False
            for spooled in spool.peek(limit):
                try:
                    events = self._codec.decode(spooled.payload)
                except WireError as exc:
                    spool.quarantine(spooled.path, f"not a record ({exc})")
                    continue
                if spooled.partition == UNROUTED:
                    self._route_spooled(spool, spooled, events)
                    routed = True
                    break
                assert self._router is not None
                if spooled.partition >= self._router.partitions:
                    spool.quarantine(spooled.path, f"no partition {spooled.partition}")
                    continue
                heads.append(
                    PendingRecord(
                        spooled.partition, spooled.payload, len(events), spooled.born, spooled
                    )
                )
            self.counters.add("spool_quarantined", spool.take_quarantined())
            if heads and routed:
                heads = []  # re-read: the routed pieces may be older than what follows
            if not routed:
                break
        return heads

    def _route_spooled(self, spool: Spool, spooled: SpooledRecord, events: list) -> None:
        """Rewrite a record spooled before routing was known as per-partition records."""
        assert self._router is not None
        by_partition: dict[int, list[Event]] = defaultdict(list)
        for event in events:
            by_partition[self._router.partition(self._codec.route(event))].append(event)
        pieces = [
            (record.partition, record.payload)
            for partition, events in by_partition.items()
            for record in self._pack(partition, events, spooled.born)
        ]
        spool.replace(spooled, pieces)

    async def _send(self, producer: AIOKafkaProducer, batch: list[PendingRecord]) -> None:
        """Hand ``batch`` to the producer and settle every record's fate on its own.

        A record handed over is awaited, never re-queued while the producer may still
        deliver it. A synchronous failure stops the round: that record and the ones after
        it go back, untouched, in order.
        """
        todo = deque(batch)
        handed: list[tuple[PendingRecord, asyncio.Future]] = []
        stop: BaseException | None = None
        try:
            while todo:
                record = todo.popleft()
                try:
                    future = await producer.send(
                        self.settings.topic, record.payload, partition=record.partition
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
                self._in_flight.append((record, future))
        finally:
            self._give_back(list(todo))
        results = await asyncio.gather(*(f for _, f in handed), return_exceptions=True)
        self._in_flight.clear()
        refused_size = self._refused_size
        self._refused_size = False
        failed: list[PendingRecord] = []
        for (record, _), result in zip(handed, results, strict=True):
            if not isinstance(result, BaseException):
                self._delivered(record)
            elif classify(result) is Failure.TOO_LARGE:
                failed.extend(self._too_large(record, result))
            else:
                failed.append(record)
                stop = stop or result
        if self._shrink:  # a shared produce batch was too large: smaller batches, then retry
            self._shrink = False
            self._lower_cap(self._record_cap // 2, "a produce batch was refused as too large")
            failed = [piece for record in failed for piece in self._fit(record)]
        if refused_size:  # the idempotent producer's sequence is off after a refused batch
            self._give_back(failed)
            raise Resize()
        self._give_back(failed)
        if stop is not None:
            if classify(stop) is Failure.REFUSED:
                self.counters.add("send_rejected")
                raise Refused(repr(stop)) from stop
            raise stop if isinstance(stop, KafkaError) else KafkaError(repr(stop))

    def _give_back(self, records: list[PendingRecord]) -> None:
        """Unsent records go back to the front of pending (spooled ones stay in the spool)."""
        for record in reversed(records):
            if record.spooled is None:
                self._in_flight_bytes = max(0, self._in_flight_bytes - len(record.payload))
                self.pending.appendleft(record)
                self.pending_bytes += len(record.payload)

    def _delivered(self, record: PendingRecord) -> None:
        self.counters.add("sent_records")
        self.counters.add("sent_events", record.events)
        if record.spooled is not None:
            if self._spool is not None:
                self._spool.remove(record.spooled)
            self.counters.add("unspooled_records")
        else:
            self._in_flight_bytes = max(0, self._in_flight_bytes - len(record.payload))

    def _too_large(self, record: PendingRecord, error: BaseException) -> list[PendingRecord]:
        """The broker (or producer) refused ``record``'s produce batch as too large.

        A record no larger than the producer's batch size may just have shared a batch that
        was too large: it is sent again once batches are smaller (see ``_send``). A record
        alone in its batch (always so at the smallest cap) is too large itself: it is split,
        or dropped and counted when it holds one event. Returns what to send in its place.
        """
        self.counters.add("send_rejected")
        self._refused_size = True
        if len(record.payload) <= self._batch_bytes:
            self._shrink = True
            return [record]
        self._lower_cap(len(record.payload) // 2, repr(error))
        return self._split(record)

    def _lower_cap(self, cap: int, why: str) -> None:
        new_cap = max(MIN_RECORD_BYTES, min(self._record_cap, cap))
        if new_cap < self._record_cap:
            log.warning(
                "tally: the broker refused records as too large (%s); records are now capped at "
                "%d bytes. Set record_bytes below the topic's max.message.bytes.",
                why,
                new_cap,
            )
            self._record_cap = new_cap

    def _fit(self, record: PendingRecord) -> list[PendingRecord]:
        """``record`` as is, or split if it exceeds the (lowered) cap."""
        if len(record.payload) <= self._record_cap or record.events == 1:
            return [record]
        return self._split(record)

    def _split(self, record: PendingRecord) -> list[PendingRecord]:
        """Split ``record`` in two or more under the cap; a single event is dropped, counted.

        A spooled record is rewritten in the spool (nothing returned); pieces keep its age.
        """
        size = len(record.payload)
        if record.spooled is None:
            self._in_flight_bytes = max(0, self._in_flight_bytes - size)
        if record.events == 1:
            self.counters.add("dropped_rejected")
            log.error("tally: one event of %d bytes exceeds the broker's limit; dropped", size)
            if record.spooled is not None and self._spool is not None:
                self._spool.remove(record.spooled)
            return []
        events = self._codec.decode(record.payload)
        half = len(events) // 2
        pieces = [
            piece
            for part in (events[:half], events[half:])
            for piece in self._pack(record.partition, part, record.born)
        ]
        self.counters.add("split_records")
        if record.spooled is not None and self._spool is not None:
            self._spool.replace(record.spooled, [(p.partition, p.payload) for p in pieces])
            return []
        self._in_flight_bytes += sum(len(p.payload) for p in pieces)
        return pieces

    # -- stopping ----------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        """Leave nothing behind silently: unsent records go to the spool or are counted."""
        in_flight, self._in_flight = list(self._in_flight), []
        # Records the producer holds: give it a bounded moment to deliver them.
        await self._drop_producer(timeout=min(5.0, max(1.0, self.settings.close_timeout_s)))
        unsent = []
        for record, future in in_flight:
            if future.done() and not future.cancelled() and future.exception() is None:
                self._delivered(record)
            else:
                unsent.append(record)
        for record in unsent:
            self._spool_or_drop(record)
        while self.pending:
            self._spool_or_drop(self.pending.popleft())
        self.pending_bytes = 0
        self._in_flight_bytes = 0
        if self.buffer:
            self._spool_unrouted()
        for future in self._take_flush_requests():
            _resolve(future, TimeoutError("tally client stopped before delivery"))
        if self._spool is not None:
            self.counters.add("spool_quarantined", self._spool.take_quarantined())
            self._spool.close()

    def _spool_unrouted(self) -> None:
        """Events buffered at stop without partition metadata (the broker was never reached)."""
        items = [self.buffer.popleft()[:-1] for _ in range(len(self.buffer))]
        self.counters.add("drained", len(items))
        for record in self._pack(UNROUTED, items, self._born()):
            self._spool_or_drop(record)


class SenderLoop(asyncio.SelectorEventLoop):
    """The sender's event loop: resolves host names without the default executor.

    At interpreter exit the default executor refuses new work, so a tracker closed by
    ``atexit`` could not resolve ``localhost`` or ``kafka`` and lost its events.
    """

    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):
        future: asyncio.Future = self.create_future()

        def resolve() -> None:
            result, error = None, None
            try:
                result = socket.getaddrinfo(host, port, family, type, proto, flags)
            except BaseException as exc:  # handed to the awaiting coroutine
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self.call_soon_threadsafe(_settle, future, result, error)

        try:
            threading.Thread(target=resolve, name="tally-resolve", daemon=True).start()
        except RuntimeError:  # no new threads any more: resolve inline
            return socket.getaddrinfo(host, port, family, type, proto, flags)
        return await future


def _settle(future: asyncio.Future, result: object, error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


def _resolve(future: concurrent.futures.Future[None], error: Exception | None = None) -> None:
    """Complete a flush future unless its waiter already gave up on it."""
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
