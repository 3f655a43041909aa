"""Replaying pending group intents on assignment, before any record of the partition is folded.

A member that finds ``tally2`` intents on its new partitions rebuilds each group's insert
exactly: every member's range is re-read with a group-less consumer (its own partitions into
their states' folds, the others' into scratch folds) and inserted under the group's token, so
ClickHouse drops it if the original or another owner's replay landed. It then commits only its
own members' ends and seeks its consumer past them. Two owners replaying one group collide
harmlessly on the token.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from tally.engine.clients import KafkaClients
from tally.engine.group_flush import FlushSteps, GroupFlush
from tally.engine.group_intent import GroupIntent
from tally.engine.isolator import RangeReader, range_consumer
from tally.engine.partitions import Partitions, PartitionState
from tally.engine.protocols import EngineSettings, Fold, FoldFactory
from tally.engine.stopping import StopGate

log = logging.getLogger("tally.aggregator")  # the name operators' log queries select


@dataclass(eq=False)
class GroupReplayer:
    """Replays the pending groups of newly assigned partitions (``RebalanceListener.replay``)."""

    settings: EngineSettings
    partitions: Partitions
    clients: KafkaClients
    new_fold: FoldFactory[Any]
    groups: GroupFlush
    steps: FlushSteps
    gate: StopGate

    async def replay(self, assigned: set[TopicPartition]) -> None:
        """Replay every group pending on ``assigned``; retried until done or stopping."""
        pending: dict[GroupIntent, list[PartitionState]] = {}
        for tp in sorted(assigned):
            state = self.partitions.states.get(tp)
            if state is not None and state.group is not None:
                pending.setdefault(state.group, []).append(state)
        backoff = 0.2
        while pending:
            try:
                await self._replay_all(pending)
                return
            except Exception as exc:
                log.warning("group replay failed: %r; retrying", exc)
                await self.gate.pause(backoff)
                backoff = min(backoff * 2, self.settings.retry_max_backoff_s)

    async def _replay_all(self, pending: dict[GroupIntent, list[PartitionState]]) -> None:
        reader = range_consumer(self.settings, "groups")
        await reader.start()
        try:
            for intent in list(pending):
                await self._replay(reader, intent, pending[intent])
                del pending[intent]
        finally:
            with contextlib.suppress(Exception):
                await reader.stop()

    async def _replay(
        self, reader: AIOKafkaConsumer, intent: GroupIntent, own: list[PartitionState]
    ) -> None:
        topic = self.settings.topic
        mine = {state.tp.partition: state for state in own}
        dead_letters = self.clients.dead_letters
        assert dead_letters is not None
        folds: list[Fold[Any]] = []
        for m in intent.members:
            tp = TopicPartition(topic, m.partition)
            state = mine.get(m.partition)
            if state is not None:
                state.fold.clear()  # an earlier attempt may have folded part of it
            target = state.fold if state is not None else self.new_fold(reread=True)
            reader.assign([tp])
            part = await RangeReader(reader, tp).fold(m.start, m.end, lambda t=target: t)
            if state is not None:
                for value, rejects in part.rejected:
                    dead_letters.queue(topic, m.partition, value, rejects)
                state.last = m.end
            folds.append(part.fold)
        await self.groups.insert(intent, own, folds, self.steps, "replay")
        consumer = self.clients.consumer
        assert consumer is not None
        for state in own:
            if state.group is None and state.start is not None:  # settled: continue after it
                state.skip_below = state.start
                consumer.seek(state.tp, state.start)
        log.info(
            "replayed pending group",
            extra={"group": intent.body(), "partitions": sorted(mine)},
        )
