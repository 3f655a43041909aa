"""The partitions this member owns: assignment, per-partition state, rebalance listener.

On assignment a partition's committed offset says where its range starts and whether an
intent (``tally1:start:end``) is pending: if so, exactly that range is replayed and flushed
under its original token. A pending group intent (``tally2:...``, ``group_intent``) is replayed
as a whole by ``replay.GroupReplayer`` right after assignment, before any record of the
partition is folded. On revoke the partition is flushed (best effort) and dropped. An
assignment that arrives while the engine closes its clients (a rebalance as it leaves the
group) creates no state: the member consumes and commits nothing more, and the next owner
reads the committed offsets and intents itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaError,
    RebalanceInProgressError,
)
from aiokafka.structs import OffsetAndMetadata

from tally.engine.clients import ClientsClosed, KafkaClients
from tally.engine.group_intent import GroupIntent
from tally.engine.intent import Intent
from tally.engine.metrics import EngineMetrics
from tally.engine.protocols import EngineSettings, Fold, FoldFactory
from tally.engine.stopping import StopGate

log = logging.getLogger("tally.aggregator")  # the name operators' log queries select

LOST_OWNERSHIP = (CommitFailedError, IllegalStateError, RebalanceInProgressError)
Flush = Callable[[list[TopicPartition]], Awaitable[None]]


@dataclass
class PartitionState:
    """What one owned partition has folded since its last flush."""

    tp: TopicPartition
    fold: Fold[Any]
    start: int | None = None
    last: int | None = None
    replay: Intent | None = None
    rejects: int = 0
    opened_at: float = field(default_factory=time.monotonic)
    newest_ms: int | None = None  # Kafka timestamp of the newest record fetched
    group: GroupIntent | None = None  # a pending group intent, replayed before consuming
    skip_below: int = -1  # records below this offset were replayed as a group: not again

    def has_range(self) -> bool:
        """True if records were consumed since the last flush."""
        return self.start is not None and self.last is not None and self.last >= self.start

    def flushable(self) -> bool:
        """True if there is a range to flush and it is not a replay cut short.

        A replayed range must end exactly where the original one did: flushing a prefix of
        it under the original token would be dropped as a duplicate, and the rest of the
        original range would then be counted again.
        """
        if not self.has_range() or self.group is not None:
            return False
        return self.replay is None or (self.last is not None and self.last >= self.replay.end)

    def reset(self) -> None:
        """After a durable flush: the next range starts after ``last``."""
        assert self.last is not None
        self.start = self.last + 1
        self.replay = None
        self.group = None
        self.skip_below = -1
        self.fold.clear()
        self.rejects = 0
        self.opened_at = time.monotonic()


@dataclass(eq=False)
class Partitions:
    """Owned partitions and their state; ``lock`` serializes consuming, flushing, rebalancing."""

    settings: EngineSettings
    metrics: EngineMetrics
    clients: KafkaClients
    gate: StopGate
    new_fold: FoldFactory[Any]
    states: dict[TopicPartition, PartitionState] = field(init=False, default_factory=dict)
    lock: asyncio.Lock = field(init=False, default_factory=asyncio.Lock)
    # no offsets and an empty topic at start: commit where we begin
    new_group: bool = field(init=False, default=False)

    def drop(self, tps: Iterable[TopicPartition]) -> None:
        """Forget the state of ``tps`` (lost, revoked or interrupted: the next owner replays)."""
        for tp in tps:
            self.states.pop(tp, None)
            for gauge in (self.metrics.lag, self.metrics.lag_seconds):
                with contextlib.suppress(KeyError):  # another member reports it now
                    gauge.remove(str(tp.partition))
        self.metrics.assigned.set(len(self.states))

    def fetched(self, tp: TopicPartition, timestamp_ms: int) -> None:
        """Note the Kafka timestamp of the newest record fetched from ``tp`` (for the lag)."""
        state = self.states.get(tp)
        if state is not None:
            state.newest_ms = timestamp_ms

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        """Create state for new partitions, picking up any pending intent to replay."""
        committed = await self._committed(partitions)
        if self.new_group:
            none = [tp for tp in partitions if getattr(committed.get(tp), "offset", -1) < 0]
            await self._commit_beginnings(none)
        for tp in partitions:
            state = PartitionState(tp, self.new_fold())
            meta = committed.get(tp)
            if meta is not None and meta.offset >= 0:
                state.start = meta.offset
                state.replay = Intent.decode(meta.metadata, meta.offset)
                state.group = GroupIntent.decode(meta.metadata, meta.offset, tp.partition)
                if state.group is not None:
                    self.metrics.replays.inc()
                    log.info(
                        "replaying pending group",
                        extra={"partition": tp.partition, "group": state.group.body()},
                    )
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

    async def revoked(self, partitions: set[TopicPartition], flush: Flush) -> None:
        """Flush and commit the partitions we are losing; drop their state either way."""
        owned = [tp for tp in partitions if tp in self.states]
        try:
            await asyncio.wait_for(flush(owned), self.settings.session_timeout_ms / 1000)
        except Exception as exc:
            log.warning("flush on revoke failed; the new owner replays: %r", exc)
        self.drop(owned)

    def restart_range(self, state: PartitionState, offset: int) -> None:
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

    async def _commit_beginnings(self, partitions: list[TopicPartition]) -> None:
        """Commit the first offset of partitions that have none, so that an aggregator started
        (or restarted) after the first records arrive finds a group with offsets, not a new
        group over a non-empty topic. Best effort: a failure leaves the start to the next."""
        consumer = self.clients.consumer
        if not partitions or consumer is None:
            return
        try:
            first = await consumer.beginning_offsets(partitions)
            await consumer.commit({tp: OffsetAndMetadata(first[tp], "") for tp in partitions})
        except (KafkaError, *LOST_OWNERSHIP) as exc:
            log.warning("committing the first offsets of a new group failed: %r", exc)

    async def _committed(self, partitions: set[TopicPartition]) -> dict:
        """Committed offsets and metadata, retried until every partition is answered.

        Right after a coordinator (re)loads, Kafka answers an offset fetch with a group-level
        error that aiokafka turns into an empty result; taking that as "no intent" would lose
        a pending replay, so an incomplete answer is asked again.
        """
        admin = self.clients.require_admin()
        backoff = 0.05
        while True:
            try:
                committed = await admin.list_consumer_group_offsets(
                    self.settings.group, partitions=list(partitions)
                )
                if partitions <= committed.keys():
                    return committed
            except KafkaError as exc:
                if self.clients.closing:
                    raise ClientsClosed("offset fetch while closing") from exc
                log.warning("offset fetch failed: %r; retrying", exc)
            await self.gate.pause(backoff)
            backoff = min(backoff * 2, 2.0)


class RebalanceListener(ConsumerRebalanceListener):
    """Routes aiokafka's rebalance callbacks to ``Partitions``, under its lock."""

    def __init__(
        self,
        partitions: Partitions,
        flush: Flush,
        replay: Callable[[set[TopicPartition]], Awaitable[None]] | None = None,
    ) -> None:
        self.partitions = partitions
        self.flush = flush
        self.replay = replay  # pending group intents, replayed before consuming

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.partitions.lock:
            await self.partitions.revoked(set(revoked), self.flush)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        async with self.partitions.lock:
            if self.partitions.clients.closing:
                # Leaving the group (stop): nothing of these is consumed or committed here; the
                # next owner reads their committed offsets and intents.
                log.info("assignment while stopping; left to the next owner")
                return
            try:
                await self.partitions.assigned(set(assigned))
            except ClientsClosed:
                log.info("assignment while stopping; left to the next owner")
                return
            if self.replay is not None:
                await self.replay(set(assigned))
