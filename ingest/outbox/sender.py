"""What ships: the sender thread, its producer, and the loop that keeps delivering.

It runs in its own daemon thread with its own event loop, so neither sync nor async callers
ever wait on the network. The ``Accumulator`` turns the buffer into capped records per
partition; ``Delivery`` produces them with an idempotent aiokafka producer. Unacknowledged
records are retried with backoff, oldest first; once handed to the producer, a record is
awaited until the broker acknowledges or fails it, and only a failed record is sent again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
from collections import deque
from typing import Generic

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from tally.ingest.outbox.accumulator import Accumulator
from tally.ingest.outbox.delivery import Delivery
from tally.ingest.outbox.loop import SenderLoop
from tally.ingest.outbox.packer import MIN_RECORD_BYTES, Fold, Packer
from tally.ingest.outbox.ratelog import RateLimitedLog
from tally.ingest.outbox.record import R, RecordCodec
from tally.ingest.settings import ClientSettings
from tally.ingest.spool import Spool
from tally.ingest.stats import Counters
from tally.kafka.produce_errors import Refused, Resize
from tally.kafka.routing import Router

log = logging.getLogger("tally.ingest")


class Sender(Generic[R]):
    """Owns the producer thread. ``buffer`` is shared with the outbox (append-only there)."""

    def __init__(
        self,
        settings: ClientSettings,
        source: str,
        buffer: deque[R],
        counters: Counters,
        codec: RecordCodec[R],
        fold: Fold[R] | None = None,
    ) -> None:
        self.settings = settings
        self.source = source
        self.pid = os.getpid()
        self.counters = counters
        spool = (
            Spool(settings.spool_dir, source, settings.spool_bytes) if settings.spool_dir else None
        )
        drop_log = RateLimitedLog()
        packer = Packer(
            codec, settings.record_events, settings.record_bytes, counters, drop_log, fold
        )
        self._acc = Accumulator(settings, buffer, counters, packer, spool, drop_log)
        self._delivery = Delivery(settings.topic, self._acc)
        self._flush_requests: deque[concurrent.futures.Future[None]] = deque()
        self._stopping = threading.Event()
        self._producer: AIOKafkaProducer | None = None
        self._wake: asyncio.Event | None = None
        self._ship_wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
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
        if self._acc.spool is not None:
            self._acc.spool.forget_after_fork()

    @property
    def pending_bytes(self) -> int:
        """Bytes of encoded records waiting for the broker (not counting the spool)."""
        return self._acc.pending_bytes

    @property
    def spooled(self) -> int:
        """Records currently waiting in the spool."""
        return len(self._acc.spool) if self._acc.spool else 0

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
            self._drain()
            await self._wait(self._wake)
        self._drain()
        final = asyncio.wrap_future(self.request_flush())
        with contextlib.suppress(Exception):
            await asyncio.wait_for(final, self.settings.close_timeout_s)
        shipper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await shipper
        await self._shutdown()

    def _drain(self) -> None:
        if self._acc.drain() and self._ship_wake is not None:
            self._ship_wake.set()

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
                    self._acc.router = Router(len(partitions))
                flushes = self._take_flush_requests()
                try:
                    self._drain()
                    await self._delivery.ship(self._producer)
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
            if not self._acc.pending and not self._flush_requests:
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
        cap = self._acc.packer.cap
        batch_bytes = self._delivery.batch_bytes = 1 if cap <= MIN_RECORD_BYTES else cap + 1024
        producer = AIOKafkaProducer(
            bootstrap_servers=s.bootstrap_servers,
            client_id=f"tally-client-{self.source}",
            compression_type=s.compression,
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            # A produce batch never holds more than one record's worth of bytes, so what
            # reaches the broker stays under record_bytes (+ headers) whatever is batched.
            max_batch_size=batch_bytes,
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

    async def _wait(self, event: asyncio.Event | None) -> None:
        """Wait for ``event`` or one linger period, whichever comes first."""
        assert event is not None
        # asyncio.timeout, not wait_for: in 3.11 wait_for can swallow the shipper's
        # cancellation when it races with the event being set, stalling close().
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.linger_ms / 1000):
                await event.wait()
        event.clear()

    async def _shutdown(self) -> None:
        """Leave nothing behind silently: unsent records go to the spool or are counted."""
        in_flight = self._delivery.take_in_flight()
        # Records the producer holds: give it a bounded moment to deliver them.
        await self._drop_producer(timeout=min(5.0, max(1.0, self.settings.close_timeout_s)))
        unsent = []
        for record, future in in_flight:
            if future.done() and not future.cancelled() and future.exception() is None:
                self._acc.delivered(record)
            else:
                unsent.append(record)
        for record in unsent:
            self._acc.spool_or_drop(record)
        self._acc.abandon()
        for future in self._take_flush_requests():
            _resolve(future, TimeoutError("tally client stopped before delivery"))
        spool = self._acc.spool
        if spool is not None:
            self.counters.add("spool_quarantined", spool.take_quarantined())
            spool.close()


def _resolve(future: concurrent.futures.Future[None], error: Exception | None = None) -> None:
    """Complete a flush future unless its waiter already gave up on it."""
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
