"""The engine's shell: start (retried until ready), the consume loop, one stop path.

``Engine(settings, sink, new_fold)`` wires the parts (``partitions``, ``flusher``,
``isolator``, ``budget``) the way aiokafka's consumer wires its fetcher, coordinator and
subscription state; ``run(stop)`` consumes until ``stop`` is set, then flushes what it owns,
commits and leaves the group (``stop`` does not call revoke).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from tally.engine.budget import FlushBudget
from tally.engine.clients import KafkaClients
from tally.engine.flusher import Flusher, Inserter
from tally.engine.group_flush import GroupFlush
from tally.engine.isolator import Isolator
from tally.engine.metrics import EngineMetrics
from tally.engine.offsets import StartRefused, check_initial_offset, process_started_at
from tally.engine.pacer import FlushPacer
from tally.engine.pacing import pacing_rule
from tally.engine.partitions import Partitions, RebalanceListener
from tally.engine.pressure_watch import PressureWatch
from tally.engine.protocols import EngineSettings, FoldFactory, Rejected, Rows, Sink
from tally.engine.replay import GroupReplayer
from tally.engine.stopping import StopGate, Stopping

log = logging.getLogger("tally.aggregator")  # the name operators' log queries select

YIELD_EVERY_S = 0.05  # longest stretch of folding without giving the event loop a turn


class Engine(Generic[Rows]):
    """One consumer process: owns partitions of the group and flushes them through the sink.

    ``Rows`` ties the fold to its sink: what ``new_fold`` folds is what ``sink`` inserts.
    """

    def __init__(
        self,
        settings: EngineSettings,
        sink: Sink[Rows],
        new_fold: FoldFactory[Rows],
        metrics: EngineMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.metrics = metrics = metrics or EngineMetrics()
        self.gate = StopGate(settings.shutdown_grace_s)
        self.clients = KafkaClients()
        self.partitions = Partitions(settings, metrics, self.clients, self.gate, new_fold)
        inserter = Inserter(sink, metrics, self.gate, settings.retry_max_backoff_s)
        isolator = Isolator(
            settings,
            metrics,
            self.clients,
            new_fold,
            inserter.insert_rows,
            getattr(sink, "exclude", None),  # optional: leave out what a rejection landed
        )
        # Combined flushes keep their one insert per interval; otherwise each partition flushes
        # on its own turn, paced under the insert ceiling and the parts pressure.
        pacer = None if settings.group_flush else FlushPacer(pacing_rule(settings), metrics)
        self.budget = FlushBudget(settings, metrics, pacer)
        read_pressure = getattr(sink, "parts_pressure", None)
        self.watch = (
            PressureWatch(read_pressure, pacer, settings.parts_check_interval_s)
            if pacer is not None
            else None
        )
        # Combined flushes need a sink that can concatenate rows (an optional ability); a
        # sink that can also replays pending groups when combined flushes are turned off.
        combine = getattr(sink, "combine", None)
        groups = GroupFlush(settings, metrics, inserter.insert_rows, combine) if combine else None
        self.flusher = Flusher(
            settings,
            metrics,
            self.partitions,
            self.clients,
            inserter,
            isolator,
            self.budget,
            self.gate,
            groups if settings.group_flush else None,
        )
        self.replayer = (
            GroupReplayer(
                settings, self.partitions, self.clients, new_fold, groups, self.flusher, self.gate
            )
            if groups is not None
            else None
        )
        self._started_at = process_started_at()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then flush, commit and leave the group."""
        self.gate.stop = stop
        try:
            await self._until_ready(stop, "ClickHouse", self._start_sink, self.sink.close)
            await self._until_ready(stop, "Kafka", self._start_kafka, self.clients.close)
            if stop.is_set():
                return
            consumer = self.clients.consumer
            assert consumer is not None
            lock, flusher = self.partitions.lock, self.flusher
            self.budget.restart_interval()
            while not stop.is_set():
                batches = await consumer.getmany(
                    timeout_ms=100, max_records=self.settings.max_poll_records
                )
                async with lock:
                    for tp, records in batches.items():
                        self.partitions.fetched(tp, records[-1].timestamp)
                        await self._consume(tp, records)
                    if self.watch is not None:
                        await self.watch.poll()
                    due = flusher.due()
                    if due is not None:
                        await flusher.flush(due)
        except Stopping:
            log.warning("stopped while retrying; unfinished ranges will be replayed")
        finally:
            await self._shutdown()

    async def _until_ready(
        self,
        stop: asyncio.Event,
        what: str,
        start: Callable[[], Awaitable[None]],
        cleanup: Callable[[], Awaitable[None]],
    ) -> None:
        """Retry ``start`` with backoff until it succeeds or ``stop`` is set (no crash loop)."""
        backoff = 0.5
        while not stop.is_set():
            try:
                await start()
                return
            except StartRefused:
                with contextlib.suppress(Exception):
                    await cleanup()
                raise
            except Exception as exc:
                log.warning("%s not ready: %s; retrying", what, exc, extra={"backoff": backoff})
                with contextlib.suppress(Exception):
                    await cleanup()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(backoff * 2, self.settings.retry_max_backoff_s)

    async def _start_sink(self) -> None:
        await self.sink.start()
        if self.settings.apply_ddl:
            await self.sink.apply_ddl()

    async def _start_kafka(self) -> None:
        s = self.settings
        consumer = await self.clients.start(s)
        if s.initial_offset is None:
            admin = self.clients.admin
            assert admin is not None
            self.partitions.new_group = await check_initial_offset(
                admin, consumer, s.group, s.topic, self._started_at
            )
        replay = self.replayer.replay if self.replayer is not None else None
        listener = RebalanceListener(self.partitions, self.flusher.flush, replay)
        consumer.subscribe([s.topic], listener=listener)

    async def _shutdown(self) -> None:
        """Flush what we own, commit, leave the group (stop does not call revoke)."""
        partitions = self.partitions
        if self.clients.consumer is not None and partitions.states:
            async with partitions.lock:
                try:
                    await asyncio.wait_for(self.flusher.flush(list(partitions.states)), 60)
                except Exception as exc:
                    log.warning("final flush failed; the range will be replayed: %r", exc)
                partitions.states.clear()
        await self.clients.close()
        await self.sink.close()

    async def _consume(self, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        metrics, budget, flush = self.metrics, self.budget, self.flusher.flush
        partitions = self.partitions
        owned = partitions.states
        dead_letters = self.clients.dead_letters
        assert dead_letters is not None
        yielded = time.monotonic()
        for record in records:
            if time.monotonic() - yielded >= YIELD_EVERY_S:
                # Let aiokafka's heartbeat run: folding one poll of wide records (2,000 records
                # of 2,000 distribution events) takes longer than a session timeout, and a
                # member that misses its heartbeats loses its partitions and re-folds them.
                await asyncio.sleep(0)
                yielded = time.monotonic()
            state = owned.get(tp)
            if state is None:
                return  # revoked meanwhile; the new owner consumes these
            if state.group is not None or record.offset < state.skip_below:
                continue  # a pending group (not consumed) or its replayed range (done)
            if state.replay is not None and record.offset > state.replay.end:
                # The replayed range ended before this record (its tail is gone): close it.
                if state.has_range():
                    state.last = state.replay.end
                    await flush([tp])
                    if tp not in owned:
                        return
                state.replay = None
            if state.start is None:
                state.start = record.offset
            elif record.offset < state.start and not state.has_range():
                partitions.restart_range(state, record.offset)
            metrics.records_in.inc()
            before, entries_before, bytes_before = (
                state.fold.events,
                len(state.fold),
                state.fold.nbytes,
            )
            if record.value is None:
                rejects = [Rejected(record.offset, -1, "empty_record", "")]
            else:
                rejects = state.fold.add_record(record.value, record.offset, record.timestamp)
            metrics.events_in.inc(state.fold.events - before)
            added_bytes = state.fold.nbytes - bytes_before
            if rejects:
                # Queued in memory before ``last`` moves past the record: a flush drains them
                # (retrying) before it commits, so none can be skipped by a commit.
                letters_before = dead_letters.nbytes
                dead_letters.queue(tp.topic, tp.partition, record.value, rejects)
                added_bytes += dead_letters.nbytes - letters_before
                state.rejects += len(rejects)
                for reject in rejects:
                    metrics.dead_letters.labels(reject.reason).inc()
                if not dead_letters.failing:
                    try:
                        await dead_letters.dispatch()
                    except Exception as exc:
                        log.error("dead letters not sent: %r; retried before the commit", exc)
            state.last = record.offset
            if state.replay is not None:
                # A replay flushes exactly at its original end, whatever the memory bound says
                # (its range was bounded when it was first folded): no flush storm meanwhile.
                if record.offset >= state.replay.end:
                    await flush([tp])
            elif budget.grow(len(state.fold) - entries_before, added_bytes):
                # Memory bound: a burst or a cardinality explosion flushes early.
                await flush(list(owned))
