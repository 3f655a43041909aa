"""The aggregator loop: consume, fold per partition, flush exactly once, commit.

Flush protocol for the partitions being flushed (one insert per partition, run in parallel):
  1. commit offset ``start`` with intent metadata ``tally1:start:end`` (fenced by the group
     generation: a member that lost the partition fails here and inserts nothing);
  2. insert the partition's rows with ``insert_deduplication_token = topic:partition:start-end``
     and wait for ClickHouse to acknowledge it, retrying with backoff for as long as it takes;
  3. wait for the dead letters of the range to be acknowledged;
  4. commit offset ``end + 1`` without metadata.
A member that finds an intent on assignment replays exactly ``start..end`` and flushes there,
so a repeated insert carries the same token and ClickHouse drops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaError,
    RebalanceInProgressError,
)
from aiokafka.structs import OffsetAndMetadata

from tally.aggregator.deadletter import DeadLetters
from tally.aggregator.fold import PartitionFold, Rejected
from tally.aggregator.intent import Intent
from tally.aggregator.metrics import AggregatorMetrics
from tally.aggregator.settings import AggregatorSettings
from tally.aggregator.sink import RollupSink, is_data_error
from tally.schemas.wire import BatchDecoder

log = logging.getLogger("tally.aggregator")

LOST_OWNERSHIP = (CommitFailedError, IllegalStateError, RebalanceInProgressError)


@dataclass
class PartitionState:
    """What one owned partition has folded since its last flush."""

    tp: TopicPartition
    fold: PartitionFold
    start: int | None = None
    last: int | None = None
    replay: Intent | None = None
    rejects: int = 0
    opened_at: float = field(default_factory=time.monotonic)

    def has_range(self) -> bool:
        """True if records were consumed since the last flush."""
        return self.start is not None and self.last is not None and self.last >= self.start

    def flushable(self) -> bool:
        """True if there is a range to flush and it is not a replay cut short.

        A replayed range must end exactly where the original one did: flushing a prefix of
        it under the original token would be dropped as a duplicate, and the rest of the
        original range would then be counted again.
        """
        if not self.has_range():
            return False
        return self.replay is None or (self.last is not None and self.last >= self.replay.end)

    def reset(self) -> None:
        """After a durable flush: the next range starts after ``last``."""
        assert self.last is not None
        self.start = self.last + 1
        self.replay = None
        self.fold.clear()
        self.rejects = 0
        self.opened_at = time.monotonic()


class Aggregator:
    """One aggregator process: owns partitions of the group and flushes them to ClickHouse."""

    def __init__(self, settings: AggregatorSettings, metrics: AggregatorMetrics | None = None):
        self.settings = settings
        self.metrics = metrics or AggregatorMetrics()
        schema = settings.schema
        self.decoder = BatchDecoder()
        self.sink = RollupSink(settings.clickhouse, schema)
        self.states: dict[TopicPartition, PartitionState] = {}
        self.lock = asyncio.Lock()
        self.consumer: AIOKafkaConsumer | None = None
        self.admin: AIOKafkaAdminClient | None = None
        self.dead_letters: DeadLetters | None = None
        self._dlq_producer: AIOKafkaProducer | None = None
        self._next_flush = 0.0
        self._entries = 0

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then flush, commit and leave the group."""
        try:
            await self._until_ready(stop, "ClickHouse", self._start_sink, self.sink.close)
            await self._until_ready(stop, "Kafka", self._start_kafka, self._close_kafka)
            if stop.is_set():
                return
            assert self.consumer is not None
            self._next_flush = time.monotonic() + self.settings.flush_interval_s
            while not stop.is_set():
                batches = await self.consumer.getmany(
                    timeout_ms=100, max_records=self.settings.max_poll_records
                )
                async with self.lock:
                    for tp, records in batches.items():
                        await self._consume(tp, records)
                    if self._flush_due():
                        await self._flush(list(self.states))
        finally:
            await self._shutdown()

    async def _until_ready(self, stop: asyncio.Event, what: str, start, cleanup) -> None:
        """Retry ``start`` with backoff until it succeeds or ``stop`` is set (no crash loop)."""
        backoff = 0.5
        while not stop.is_set():
            try:
                await start()
                return
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
        security = s.security.aiokafka_kwargs()
        self.admin = AIOKafkaAdminClient(bootstrap_servers=s.bootstrap_servers, **security)
        await self.admin.start()
        self._dlq_producer = AIOKafkaProducer(
            bootstrap_servers=s.bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            compression_type="lz4",
            **security,
        )
        await self._dlq_producer.start()
        self.dead_letters = DeadLetters(self._dlq_producer, s.dead_letter_topic)
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap_servers,
            group_id=s.group,
            client_id=s.client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=s.max_poll_records,
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=s.heartbeat_interval_ms,
            max_poll_interval_ms=s.max_poll_interval_ms,
            rebalance_timeout_ms=max(s.max_poll_interval_ms, 60_000),
            **security,
        )
        self.consumer.subscribe([s.topic], listener=_Listener(self))
        await self.consumer.start()

    async def _shutdown(self) -> None:
        """Flush what we own, commit, leave the group (stop does not call revoke)."""
        if self.consumer is not None and self.states:
            async with self.lock:
                try:
                    await asyncio.wait_for(self._flush(list(self.states)), 60)
                except Exception as exc:
                    log.warning("final flush failed; the range will be replayed: %r", exc)
                self.states.clear()
        await self._close_kafka()
        await self.sink.close()

    async def _close_kafka(self) -> None:
        """Close whatever Kafka clients were opened; safe to call at any stage."""
        consumer, self.consumer = self.consumer, None
        producer, self._dlq_producer = self._dlq_producer, None
        admin, self.admin = self.admin, None
        for close in (
            consumer.stop if consumer else None,
            producer.stop if producer else None,
            admin.close if admin else None,
        ):
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()

    # -- rebalance -----------------------------------------------------------------------------

    async def on_assigned(self, partitions: set[TopicPartition]) -> None:
        """Create state for new partitions, picking up any pending intent to replay."""
        committed = await self._committed(partitions)
        for tp in partitions:
            state = PartitionState(tp, PartitionFold(self.settings.limits, self.decoder))
            meta = committed.get(tp)
            if meta is not None and meta.offset >= 0:
                state.start = meta.offset
                state.replay = Intent.decode(meta.metadata, meta.offset)
                if state.replay is not None:
                    self.metrics.replays.inc()
                    log.info(
                        "replaying pending range",
                        extra={
                            "partition": tp.partition,
                            "start": state.replay.start,
                            "end": state.replay.end,
                        },
                    )
            self.states[tp] = state
        self.metrics.assigned.set(len(self.states))

    async def _committed(self, partitions: set[TopicPartition]) -> dict:
        """Committed offsets and metadata, retried until every partition is answered.

        Right after a coordinator (re)loads, Kafka answers an offset fetch with a group-level
        error that aiokafka turns into an empty result; taking that as "no intent" would lose
        a pending replay, so an incomplete answer is asked again.
        """
        assert self.admin is not None
        backoff = 0.05
        while True:
            try:
                committed = await self.admin.list_consumer_group_offsets(
                    self.settings.group, partitions=list(partitions)
                )
                if partitions <= committed.keys():
                    return committed
            except KafkaError as exc:
                log.warning("offset fetch failed: %r; retrying", exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def on_revoked(self, partitions: set[TopicPartition]) -> None:
        """Flush and commit the partitions we are losing; drop their state either way."""
        owned = [tp for tp in partitions if tp in self.states]
        try:
            await asyncio.wait_for(self._flush(owned), self.settings.session_timeout_ms / 1000)
        except Exception as exc:
            log.warning("flush on revoke failed; the new owner replays: %r", exc)
        for tp in owned:
            self.states.pop(tp, None)
        self.metrics.assigned.set(len(self.states))

    # -- consuming -----------------------------------------------------------------------------

    async def _consume(self, tp: TopicPartition, records: list) -> None:
        metrics = self.metrics
        for record in records:
            state = self.states.get(tp)
            if state is None:
                return  # revoked meanwhile; the new owner consumes these
            if state.replay is not None and record.offset > state.replay.end:
                # The replayed range ended before this record (its tail is gone): close it.
                if state.has_range():
                    state.last = state.replay.end
                    await self._flush([tp])
                    if tp not in self.states:
                        return
                state.replay = None
            if state.start is None:
                state.start = record.offset
            metrics.records_in.inc()
            before, entries_before = state.fold.events, len(state.fold)
            if record.value is None:
                rejects = [Rejected(record.offset, -1, "empty_record", "")]
            else:
                rejects = state.fold.add_record(record.value, record.offset, record.timestamp)
            state.last = record.offset
            metrics.events_in.inc(state.fold.events - before)
            if rejects:
                assert self.dead_letters is not None
                state.rejects += len(rejects)
                for reject in rejects:
                    metrics.dead_letters.labels(reject.reason).inc()
                await self.dead_letters.send(tp.topic, tp.partition, record.value, rejects)
            if state.replay is not None and record.offset >= state.replay.end:
                await self._flush([tp])
            elif self._grow(len(state.fold) - entries_before):
                # Memory bound: a burst or a cardinality explosion flushes early.
                await self._flush(list(self.states))

    def _grow(self, added: int) -> bool:
        """Track entries held across partitions; True when over ``flush_rows``."""
        self._entries += added
        return self._entries >= self.settings.flush_rows

    def _flush_due(self) -> bool:
        self._entries = sum(len(s.fold) for s in self.states.values())
        self.metrics.fold_entries.set(self._entries)
        return self._entries >= self.settings.flush_rows or time.monotonic() >= self._next_flush

    # -- flushing ------------------------------------------------------------------------------

    async def _flush(self, tps: list[TopicPartition]) -> None:
        """Make the folded ranges of ``tps`` durable in ClickHouse, then commit them."""
        self._next_flush = time.monotonic() + self.settings.flush_interval_s
        states = [
            self.states[tp] for tp in tps if tp in self.states and self.states[tp].flushable()
        ]
        if not states:
            self._entries = sum(len(s.fold) for s in self.states.values())
            return
        assert self.consumer is not None and self.dead_letters is not None
        started = time.monotonic()
        work = []
        for state in states:
            assert state.start is not None and state.last is not None
            # A replay reuses the original range, so its insert carries the original token.
            work.append((state, state.replay or Intent(state.start, state.last)))
        inserting = [(s, i) for s, i in work if len(s.fold)]
        if inserting:
            intents = {s.tp: OffsetAndMetadata(i.start, i.encode()) for s, i in inserting}
            if not await self._commit(intents, "intent"):
                return
            await asyncio.gather(*(self._insert(s, i) for s, i in inserting))
        await self._retry_forever("dead letters", self.dead_letters.drain)
        done = {s.tp: OffsetAndMetadata(s.last + 1, "") for s, _ in work if s.last is not None}
        if await self._commit(done, "done"):
            for state, _ in work:
                state.reset()
        self.metrics.flush_seconds.observe(time.monotonic() - started)
        self._update_lag()
        self._entries = sum(len(s.fold) for s in self.states.values())

    async def _insert(self, state: PartitionState, intent: Intent) -> None:
        rows = state.fold.rows()
        token = intent.token(state.tp.topic, state.tp.partition)
        await self._retry_forever("insert", lambda: self.sink.insert(rows, token))
        self.metrics.rows_out.inc(len(rows))
        self.metrics.flushes.inc()

    async def _retry_forever(self, what: str, action) -> None:
        """Run ``action`` until it succeeds, backing off; consumption waits meanwhile."""
        backoff = 0.2
        while True:
            try:
                await action()
                return
            except Exception as exc:
                kind = "data" if is_data_error(exc) else "transport"
                self.metrics.insert_retries.labels(kind).inc()
                level = logging.ERROR if kind == "data" else logging.WARNING
                log.log(level, "%s failed (%s): %s; retrying", what, kind, str(exc)[:300])
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.retry_max_backoff_s)

    async def _commit(self, offsets: dict[TopicPartition, OffsetAndMetadata], phase: str) -> bool:
        """Commit; False (and the states dropped) if we no longer own the partitions."""
        assert self.consumer is not None
        backoff = 0.2
        while True:
            try:
                await self.consumer.commit(offsets)
                return True
            except LOST_OWNERSHIP as exc:
                self.metrics.commit_failures.labels(phase).inc()
                log.warning("commit (%s) refused, partitions lost: %r", phase, exc)
                for tp in offsets:
                    self.states.pop(tp, None)
                return False
            except KafkaError as exc:
                self.metrics.commit_failures.labels(phase).inc()
                log.warning("commit (%s) failed: %r; retrying", phase, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.retry_max_backoff_s)

    def _update_lag(self) -> None:
        assert self.consumer is not None
        for tp, state in self.states.items():
            high = self.consumer.highwater(tp)
            if high is not None and state.start is not None:
                self.metrics.lag.labels(str(tp.partition)).set(max(0, high - state.start))


class _Listener(ConsumerRebalanceListener):
    """Routes aiokafka's rebalance callbacks to the aggregator, under its lock."""

    def __init__(self, aggregator: Aggregator) -> None:
        self.aggregator = aggregator

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.aggregator.lock:
            await self.aggregator.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        async with self.aggregator.lock:
            await self.aggregator.on_assigned(set(assigned))
