"""The aggregator loop: consume, fold per partition, flush exactly once, commit.

Flush protocol for the partitions being flushed:
  1. commit offset ``start`` with intent metadata ``tally1:start:end`` (fenced by the group
     generation: a member that lost the partition fails here and inserts nothing);
  2. per partition, independently: insert the rows with ``insert_deduplication_token =
     topic:partition:start-end`` and wait for ClickHouse to acknowledge it, retrying transient
     errors with backoff for as long as it takes; an insert rejected for its content
     ``max_insert_attempts`` times is isolated (``_isolate``) instead;
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
from tally.aggregator.fold import FoldRows, PartitionFold, Rejected
from tally.aggregator.intent import Intent
from tally.aggregator.metrics import AggregatorMetrics
from tally.aggregator.offsets import StartRefused, check_initial_offset, process_started_at
from tally.aggregator.ranges import RangeReader
from tally.aggregator.settings import AggregatorSettings
from tally.aggregator.sink import RollupSink, classify_error
from tally.schemas.wire import BatchDecoder

log = logging.getLogger("tally.aggregator")

LOST_OWNERSHIP = (CommitFailedError, IllegalStateError, RebalanceInProgressError)
YIELD_EVERY_S = 0.05  # longest stretch of folding without giving the event loop a turn


class Stopping(Exception):
    """A stop was requested and its grace period is over: give up retrying (ranges replay)."""


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
        self._bytes = 0
        self._stop = asyncio.Event()
        self._stop_deadline: float | None = None
        self._started_at = process_started_at()
        self._new_group = False  # no offsets and an empty topic at start: commit where we begin

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then flush, commit and leave the group."""
        self._stop = stop
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
        except Stopping:
            log.warning("stopped while retrying; unfinished ranges will be replayed")
        finally:
            await self._shutdown()

    async def _until_ready(self, stop: asyncio.Event, what: str, start, cleanup) -> None:
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
        security = s.security.aiokafka_kwargs()
        self.admin = AIOKafkaAdminClient(bootstrap_servers=s.bootstrap_servers, **security)
        await self.admin.start()
        # Not idempotent: after a rejected (too large) batch an idempotent aiokafka producer
        # fails every later send with OutOfOrderSequenceNumber. Dead letters are at-least-once.
        self._dlq_producer = AIOKafkaProducer(
            bootstrap_servers=s.bootstrap_servers,
            acks="all",
            compression_type="lz4",
            **security,
        )
        await self._dlq_producer.start()
        self.dead_letters = DeadLetters(
            self._dlq_producer, s.dead_letter_topic, s.dead_letter_max_bytes
        )
        # Fetched records are memory too: keep the fetch buffers well under the fold budget.
        fetch_max = min(64 * 2**20, max(2**20, s.max_fold_bytes // 4))
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap_servers,
            group_id=s.group,
            client_id=s.client_id,
            enable_auto_commit=False,
            auto_offset_reset=s.initial_offset or "earliest",
            max_poll_records=s.max_poll_records,
            fetch_max_bytes=fetch_max,
            max_partition_fetch_bytes=min(8 * 2**20, fetch_max),
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=s.heartbeat_interval_ms,
            max_poll_interval_ms=s.max_poll_interval_ms,
            rebalance_timeout_ms=max(s.max_poll_interval_ms, 60_000),
            **security,
        )
        await self.consumer.start()
        if s.initial_offset is None:
            self._new_group = await check_initial_offset(
                self.admin, self.consumer, s.group, s.topic, self._started_at
            )
        self.consumer.subscribe([s.topic], listener=_Listener(self))

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

    def _new_fold(self) -> PartitionFold:
        """An empty fold of one partition's records (the trace writer folds traces instead)."""
        return PartitionFold(self.settings.limits, self.decoder)

    def _count_expired(self, granularity: str, n: int) -> None:
        self.metrics.expired_on_arrival.labels(granularity).inc(n)

    # -- rebalance -----------------------------------------------------------------------------

    async def on_assigned(self, partitions: set[TopicPartition]) -> None:
        """Create state for new partitions, picking up any pending intent to replay."""
        committed = await self._committed(partitions)
        if self._new_group:
            none = [tp for tp in partitions if getattr(committed.get(tp), "offset", -1) < 0]
            await self._commit_beginnings(none)
        for tp in partitions:
            state = PartitionState(tp, self._new_fold())
            state.fold.on_expired = self._count_expired
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

    async def _commit_beginnings(self, partitions: list[TopicPartition]) -> None:
        """Commit the first offset of partitions that have none, so that an aggregator started
        (or restarted) after the first records arrive finds a group with offsets, not a new
        group over a non-empty topic. Best effort: a failure leaves the start to the next."""
        if not partitions or self.consumer is None:
            return
        try:
            first = await self.consumer.beginning_offsets(partitions)
            await self.consumer.commit({tp: OffsetAndMetadata(first[tp], "") for tp in partitions})
        except (KafkaError, *LOST_OWNERSHIP) as exc:
            log.warning("committing the first offsets of a new group failed: %r", exc)

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
            await self._pause(backoff)
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
        assert self.dead_letters is not None
        yielded = time.monotonic()
        for record in records:
            if time.monotonic() - yielded >= YIELD_EVERY_S:
                # Let aiokafka's heartbeat run: folding one poll of wide records (2,000 records
                # of 2,000 distribution events) takes longer than a session timeout, and a
                # member that misses its heartbeats loses its partitions and re-folds them.
                await asyncio.sleep(0)
                yielded = time.monotonic()
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
            elif record.offset < state.start and not state.has_range():
                self._restart_range(state, record.offset)
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
                letters_before = self.dead_letters.nbytes
                self.dead_letters.queue(tp.topic, tp.partition, record.value, rejects)
                added_bytes += self.dead_letters.nbytes - letters_before
                state.rejects += len(rejects)
                for reject in rejects:
                    metrics.dead_letters.labels(reject.reason).inc()
                if not self.dead_letters.failing:
                    try:
                        await self.dead_letters.dispatch()
                    except Exception as exc:
                        log.error("dead letters not sent: %r; retried before the commit", exc)
            state.last = record.offset
            if state.replay is not None:
                # A replay flushes exactly at its original end, whatever the memory bound says
                # (its range was bounded when it was first folded): no flush storm meanwhile.
                if record.offset >= state.replay.end:
                    await self._flush([tp])
            elif self._grow(len(state.fold) - entries_before, added_bytes):
                # Memory bound: a burst or a cardinality explosion flushes early.
                await self._flush(list(self.states))

    def _restart_range(self, state: PartitionState, offset: int) -> None:
        """The committed offset is beyond the log (topic recreated or truncated): start over."""
        log.warning(
            "committed offset is above what the log holds; restarting the range",
            extra={
                "partition": state.tp.partition,
                "committed": state.start,
                "first_received": offset,
                "dropped_intent": state.replay.encode() if state.replay else None,
            },
        )
        self.metrics.offset_resets.inc()
        state.start = offset
        state.replay = None

    def _grow(self, entries: int, nbytes: int) -> bool:
        """Track what live ranges hold; True when over ``flush_rows`` or ``max_fold_bytes``."""
        self._entries += entries
        self._bytes += nbytes
        s = self.settings
        return self._entries >= s.flush_rows or self._bytes >= s.max_fold_bytes

    def _recount(self) -> None:
        """Recompute what live (not replaying) ranges hold; replays are bounded by their range."""
        live = [s for s in self.states.values() if s.replay is None]
        self._entries = sum(len(s.fold) for s in live)
        letters = self.dead_letters.nbytes if self.dead_letters is not None else 0
        self._bytes = sum(s.fold.nbytes for s in live) + letters
        every = self.states.values()
        self.metrics.fold_entries.set(sum(len(s.fold) for s in every))
        self.metrics.fold_bytes.set(sum(s.fold.nbytes for s in every) + letters)

    def _flush_due(self) -> bool:
        self._recount()
        s = self.settings
        over = self._entries >= s.flush_rows or self._bytes >= s.max_fold_bytes
        return over or time.monotonic() >= self._next_flush

    # -- flushing ------------------------------------------------------------------------------

    async def _flush(self, tps: list[TopicPartition]) -> None:
        """Make the folded ranges of ``tps`` durable in ClickHouse, then commit them.

        After one intent commit, each partition inserts and commits on its own: a partition
        whose insert is retried or isolated never holds back another one's commit.
        """
        self._next_flush = time.monotonic() + self.settings.flush_interval_s
        states = [
            self.states[tp] for tp in tps if tp in self.states and self.states[tp].flushable()
        ]
        if not states:
            self._recount()
            return
        assert self.consumer is not None and self.dead_letters is not None
        started = time.monotonic()
        work = []
        for state in states:
            assert state.start is not None and state.last is not None
            # A replay reuses the original range, so its insert carries the original token.
            work.append((state, state.replay or Intent(state.start, state.last)))
        intents = {s.tp: OffsetAndMetadata(i.start, i.encode()) for s, i in work if len(s.fold)}
        if intents and not await self._commit(intents, "intent"):
            self._recount()
            return
        results = await asyncio.gather(
            *(self._flush_one(s, i) for s, i in work), return_exceptions=True
        )
        self.metrics.flush_seconds.observe(time.monotonic() - started)
        self._update_lag()
        self._recount()
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _flush_one(self, state: PartitionState, intent: Intent) -> None:
        """Steps 2-4 of the protocol for one partition whose intent is committed."""
        assert self.dead_letters is not None and state.last is not None
        if len(state.fold):
            await self._insert(state, intent)
        await self._retry("dead letters", self.dead_letters.drain)
        if state.tp not in self.states:
            return
        done = {state.tp: OffsetAndMetadata(state.last + 1, "")}
        if await self._commit(done, "done"):
            state.reset()

    async def _insert(self, state: PartitionState, intent: Intent) -> None:
        rows = state.fold.rows()
        token = intent.token(state.tp.topic, state.tp.partition)
        error = await self._insert_rows(rows, token, self.settings.max_insert_attempts)
        if error is None:
            return
        log.error(
            "insert rejected %d times; isolating the records ClickHouse refuses: %s",
            self.settings.max_insert_attempts,
            str(error)[:300],
            extra={"partition": state.tp.partition, "start": intent.start, "end": intent.end},
        )
        del rows
        state.fold.clear()  # the range is re-read piece by piece; free its fold meanwhile
        try:
            await self._isolate(state.tp, intent)
        except BaseException:
            # Interrupted (stopping): the emptied fold must never be committed as done; the
            # intent stays, and the next owner replays and isolates the same way.
            self.states.pop(state.tp, None)
            raise

    async def _insert_rows(self, rows: FoldRows, token: str, attempts: int) -> Exception | None:
        """Insert until acknowledged; the error once ClickHouse rejected it ``attempts`` times.

        Transient errors (connection refused, timeouts, overload) are retried without end.
        """
        backoff = 0.2
        rejected = 0
        while True:
            try:
                await self.sink.insert(rows, token)
                self.metrics.rows_out.inc(len(rows))
                self.metrics.flushes.inc()
                return None
            except Exception as exc:
                kind = classify_error(exc)
                self.metrics.insert_retries.labels(kind).inc()
                if kind == "data":
                    rejected += 1
                    if rejected >= attempts:
                        return exc
                level = logging.ERROR if kind == "data" else logging.WARNING
                log.log(level, "insert failed (%s): %s; retrying", kind, str(exc)[:300])
                await self._pause(backoff)
                backoff = min(backoff * 2, self.settings.retry_max_backoff_s)

    async def _isolate(self, tp: TopicPartition, intent: Intent) -> None:
        """Insert every part of a rejected range that ClickHouse accepts; dead-letter the rest.

        The range is halved by offset arithmetic, each half re-read from Kafka, re-folded and
        inserted once under the token of its own offsets; a half that is rejected again is
        halved again, down to single records, which go to the dead-letter topic with reason
        ``insert_rejected``. The halving depends only on the range, so a replay after a crash
        makes the same inserts with the same tokens, and ClickHouse drops what it already has.
        """
        assert self.dead_letters is not None
        self.metrics.rejected_ranges.inc()
        s = self.settings
        reader = AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap_servers,
            group_id=None,
            client_id=f"{s.client_id}-ranges",
            enable_auto_commit=False,
            **s.security.aiokafka_kwargs(),
        )
        await reader.start()
        try:
            reader.assign([tp])
            ranges = RangeReader(reader, tp)
            todo = _halves(intent.start, intent.end)
            while todo:
                start, end = todo.pop()
                part = await ranges.fold(start, end, self._new_fold)
                if not len(part.fold):
                    continue
                token = Intent(start, end).token(tp.topic, tp.partition)
                error = await self._insert_rows(part.fold.rows(), token, 1)
                if error is None:
                    continue
                if len(part.offsets) > 1:
                    todo.extend(_halves(start, end))
                    continue
                offset = part.offsets[0]
                reject = Rejected(offset, -1, "insert_rejected", str(error)[:500])
                self.dead_letters.queue(tp.topic, tp.partition, part.value, [reject])
                self.metrics.dead_letters.labels("insert_rejected").inc()
                log.error(
                    "record dead-lettered: ClickHouse rejects its rows: %s",
                    str(error)[:300],
                    extra={"partition": tp.partition, "offset": offset},
                )
        finally:
            with contextlib.suppress(Exception):
                await reader.stop()

    async def _retry(self, what: str, action) -> None:
        """Run ``action`` until it succeeds, backing off; consumption waits meanwhile."""
        backoff = 0.2
        while True:
            try:
                await action()
                return
            except Exception as exc:
                log.warning("%s failed: %s; retrying", what, str(exc)[:300])
                await self._pause(backoff)
                backoff = min(backoff * 2, self.settings.retry_max_backoff_s)

    async def _pause(self, seconds: float) -> None:
        """Back off ``seconds`` before a retry; raise ``Stopping`` once a stop's grace is over.

        Retries run under the lock, so without this a SIGTERM during an outage would never be
        served. What was not committed is replayed by the next owner.
        """
        if not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), seconds)
            return
        now = time.monotonic()
        if self._stop_deadline is None:
            self._stop_deadline = now + self.settings.shutdown_grace_s
        if now >= self._stop_deadline:
            raise Stopping()
        await asyncio.sleep(min(seconds, self._stop_deadline - now))

    async def _commit(self, offsets: dict[TopicPartition, OffsetAndMetadata], phase: str) -> bool:
        """Commit; False (and the states dropped) if we no longer own the partitions."""
        assert self.consumer is not None
        backoff = 0.2
        while True:
            try:
                await self.consumer.commit(offsets)
                self.metrics.commits.labels(phase).inc()
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
                await self._pause(backoff)
                backoff = min(backoff * 2, self.settings.retry_max_backoff_s)

    def _update_lag(self) -> None:
        assert self.consumer is not None
        for tp, state in self.states.items():
            high = self.consumer.highwater(tp)
            if high is not None and state.start is not None:
                self.metrics.lag.labels(str(tp.partition)).set(max(0, high - state.start))


def _halves(start: int, end: int) -> list[tuple[int, int]]:
    """``start..end`` split in two by offset (deterministic); single offsets are not split."""
    if start >= end:
        return [(start, end)]
    middle = (start + end) // 2
    return [(middle + 1, end), (start, middle)]


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
