"""Combined flushes: the ranges of several partitions inserted once, under one group token.

Each flush of many partitions would otherwise be one insert per partition, and each insert
makes new parts in every table its views write: at 64 partitions and a 2 s flush that is far
above ClickHouse's guidance of about one insert per second per table. ``plan`` turns the
partitions of one flush into groups (each member's intent names the whole group, see
``group_intent``); ``flush`` inserts a group's rows, concatenated in partition order, under the
group's token. A group ClickHouse rejects as data falls back to each member on its own (its
``tally1`` token, then the isolator), the same way on every replay.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata

from tally.engine.group_intent import MAX_METADATA, GroupIntent, Member, chunk
from tally.engine.intent import Intent
from tally.engine.isolator import InsertRows
from tally.engine.metrics import EngineMetrics
from tally.engine.partitions import PartitionState
from tally.engine.protocols import EngineSettings, Fold

log = logging.getLogger("tally.aggregator")  # the name operators' log queries select

Combine = Callable[[Sequence[Any]], Any]  # the sink's ``combine``: rows of several folds as one


class FlushSteps(Protocol):
    """What a group flush needs of the ``Flusher``: the per-partition steps 2-4."""

    async def insert_or_isolate(self, state: PartitionState, intent: Intent) -> None: ...

    async def settle(self, states: list[PartitionState]) -> None: ...


@dataclass(frozen=True, slots=True)
class PlannedGroup:
    """A group intent and the owned states of its members, in the group's order."""

    intent: GroupIntent
    states: list[PartitionState]

    def intents(self) -> dict[TopicPartition, OffsetAndMetadata]:
        """The intent commit of every member."""
        return {
            s.tp: OffsetAndMetadata(m.start, self.intent.encode(m.partition))
            for s, m in zip(self.states, self.intent.members, strict=True)
        }


@dataclass(eq=False)
class GroupFlush:
    """Plans and runs combined inserts; also runs the replays of ``replay.GroupReplayer``."""

    settings: EngineSettings
    metrics: EngineMetrics
    insert_rows: InsertRows
    combine: Combine
    max_metadata: int = MAX_METADATA

    def plan(
        self, work: list[tuple[PartitionState, Intent]]
    ) -> tuple[list[PlannedGroup], list[tuple[PartitionState, Intent]]]:
        """Groups of the fresh ranges with rows; the rest (replays, empty folds, a lone
        range) stays per partition."""
        fresh = {s.tp.partition: s for s, _ in work if s.replay is None and len(s.fold)}
        if len(fresh) < 2:
            return [], work
        members = []
        for partition, state in fresh.items():
            assert state.start is not None and state.last is not None
            members.append(Member(partition, state.start, state.last))
        groups = []
        grouped: set[int] = set()
        for part in chunk(members, self.max_metadata):
            if len(part) < 2:
                continue
            intent = GroupIntent.of(part)
            groups.append(PlannedGroup(intent, [fresh[m.partition] for m in intent.members]))
            grouped.update(m.partition for m in part)
        rest = [(s, i) for s, i in work if s.tp.partition not in grouped]
        return groups, rest

    async def flush(self, group: PlannedGroup, steps: FlushSteps) -> None:
        """Steps 2-4 for a group whose intents are committed."""
        folds = [s.fold for s in group.states]
        await self.insert(group.intent, group.states, folds, steps, "flush")

    async def insert(
        self,
        intent: GroupIntent,
        own: list[PartitionState],
        folds: list[Fold[Any]],
        steps: FlushSteps,
        phase: str,
    ) -> None:
        """Insert every member's fold (``folds``, in member order) under the group's token;
        then settle ``own``, the members this process owns. Rejected as data: each owned
        member is inserted (or isolated) on its own, under its own range's token."""
        topic = self.settings.topic
        rows = self.combine([f.rows() for f in folds])
        attempts = self.settings.max_insert_attempts
        error = await self.insert_rows(rows, intent.token(topic), attempts)
        del rows
        self.metrics.group_inserts.labels(phase).inc()
        self.metrics.group_members.observe(len(intent.members))
        if error is not None:
            log.error(
                "group insert rejected %d times; inserting its partitions one by one: %s",
                attempts,
                str(error)[:300],
                extra={"group": intent.body()},
            )
            alone = []
            for state in own:
                m = intent.member(state.tp.partition)
                assert m is not None
                alone.append(steps.insert_or_isolate(state, Intent(m.start, m.end)))
            await asyncio.gather(*alone)
        await steps.settle(own)
