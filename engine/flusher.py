"""Flushing: commit the intent, insert each range under its token, commit its end.

Protocol for the partitions being flushed:
  1. commit offset ``start`` with intent metadata ``tally1:start:end`` (fenced by the group
     generation: a member that lost the partition fails here and inserts nothing);
  2. per partition, independently: insert the rows with ``insert_deduplication_token =
     topic:partition:start-end`` and wait for ClickHouse to acknowledge it, retrying transient
     errors with backoff for as long as it takes; an insert rejected for its content
     ``max_insert_attempts`` times in a row with the same error is isolated (``isolator``)
     instead, leaving out what the rejected insert reported as landed;
  3. wait for the dead letters of the range to be acknowledged;
  4. commit offset ``end + 1`` without metadata.
A member that finds an intent on assignment replays exactly ``start..end`` and flushes there,
so a repeated insert carries the same token and ClickHouse drops it.

With ``groups`` (``group_flush``), the partitions of one flush share one insert instead: step 1
commits a group intent per member, step 2 is one insert under the group's token, and steps 3-4
are the same for every member (one commit).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from tally.engine.budget import FlushBudget
from tally.engine.clients import KafkaClients
from tally.engine.group_flush import GroupFlush
from tally.engine.intent import Intent
from tally.engine.isolator import Isolator
from tally.engine.metrics import EngineMetrics
from tally.engine.partitions import LOST_OWNERSHIP, Partitions, PartitionState
from tally.engine.protocols import EngineSettings, Sink
from tally.engine.stopping import StopGate

log = logging.getLogger("tally.aggregator")  # the name operators' log queries select


class Inserter:
    """Inserts rows through the sink until acknowledged, classifying and counting failures."""

    def __init__(
        self, sink: Sink[Any], metrics: EngineMetrics, gate: StopGate, max_backoff_s: float
    ) -> None:
        self.sink = sink
        self.metrics = metrics
        self.gate = gate
        self.max_backoff_s = max_backoff_s

    async def insert_rows(self, rows: Any, token: str, attempts: int) -> Exception | None:
        """Insert until acknowledged; the error once ClickHouse rejected it ``attempts`` times
        in a row with the same error (the sink's optional ``rejection(exc)`` says which are the
        same; else the type): a rejection that is not repeated identically is retried, since
        isolating re-inserts parts of the range under new tokens and is only exact when the
        rejection is deterministic.

        Transient errors (connection refused, timeouts, overload) are retried without end.
        """
        backoff = 0.2
        rejected = 0
        last: str | None = None
        rejection = getattr(self.sink, "rejection", None)
        while True:
            try:
                await self.sink.insert(rows, token)
                self.metrics.rows_out.inc(len(rows))
                self.metrics.flushes.inc()
                return None
            except Exception as exc:
                kind = self.sink.classify(exc)
                self.metrics.insert_retries.labels(kind).inc()
                if kind == "data":
                    same = rejection(exc) if rejection is not None else type(exc).__name__
                    rejected = rejected + 1 if same == last else 1
                    last = same
                    if rejected >= attempts:
                        return exc
                level = logging.ERROR if kind == "data" else logging.WARNING
                log.log(level, "insert failed (%s): %s; retrying", kind, str(exc)[:300])
                await self.gate.pause(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)


@dataclass(eq=False)
class Flusher:
    """Makes folded ranges durable in ClickHouse, then commits them (steps 1-4 above)."""

    settings: EngineSettings
    metrics: EngineMetrics
    partitions: Partitions
    clients: KafkaClients
    inserter: Inserter
    isolator: Isolator
    budget: FlushBudget
    gate: StopGate
    groups: GroupFlush | None = None

    def recount(self) -> None:
        """Recompute what the folds and the queued dead letters hold."""
        letters = self.clients.dead_letters
        self.budget.recount(self.partitions.states.values(), letters.nbytes if letters else 0)

    def due(self) -> list[TopicPartition] | None:
        """The partitions due for a flush (a bound, the pacer's turn, the interval), or None."""
        self.recount()
        return self.budget.due(self.partitions.states)

    async def flush(self, tps: list[TopicPartition]) -> None:
        """Make the folded ranges of ``tps`` durable in ClickHouse, then commit them.

        After one intent commit, each partition inserts and commits on its own: a partition
        whose insert is retried or isolated never holds back another one's commit.
        """
        self.budget.flushing(tps)
        owned = self.partitions.states
        states = [owned[tp] for tp in tps if tp in owned and owned[tp].flushable()]
        if not states:
            self._update_lag()
            self.recount()
            return
        assert self.clients.consumer is not None and self.clients.dead_letters is not None
        started = time.monotonic()
        work = []
        for state in states:
            assert state.start is not None and state.last is not None
            # A replay reuses the original range, so its insert carries the original token.
            work.append((state, state.replay or Intent(state.start, state.last)))
        groups, work = self.groups.plan(work) if self.groups else ([], work)
        intents = {s.tp: OffsetAndMetadata(i.start, i.encode()) for s, i in work if len(s.fold)}
        for group in groups:
            intents.update(group.intents())
        if intents and not await self.commit(intents, "intent"):
            self.recount()
            return
        assert self.groups is not None or not groups
        results = await asyncio.gather(
            *(self._flush_one(s, i) for s, i in work),
            *(self.groups.flush(g, self) for g in groups if self.groups),
            return_exceptions=True,
        )
        self.metrics.flush_seconds.observe(time.monotonic() - started)
        self._update_lag()
        self.recount()
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _flush_one(self, state: PartitionState, intent: Intent) -> None:
        """Steps 2-4 of the protocol for one partition whose intent is committed."""
        if len(state.fold):
            await self.insert_or_isolate(state, intent)
        await self.settle([state])

    async def settle(self, states: list[PartitionState]) -> None:
        """Steps 3-4 for inserted ranges: dead letters acknowledged, then their ends committed
        (one commit for all of them) and their states reset."""
        dead_letters = self.clients.dead_letters
        assert dead_letters is not None
        await self.retry("dead letters", dead_letters.drain)
        owned = [s for s in states if s.tp in self.partitions.states and s.last is not None]
        if not owned:
            return
        done = {s.tp: OffsetAndMetadata(s.last + 1, "") for s in owned if s.last is not None}
        if await self.commit(done, "done"):
            for state in owned:
                state.reset()

    async def insert_or_isolate(self, state: PartitionState, intent: Intent) -> None:
        """Insert the partition's fold under ``intent``'s token; isolate it if rejected."""
        rows = state.fold.rows()
        token = intent.token(state.tp.topic, state.tp.partition)
        attempts = self.settings.max_insert_attempts
        error = await self.inserter.insert_rows(rows, token, attempts)
        if error is None:
            return
        log.error(
            "insert rejected %d times; isolating the records ClickHouse refuses: %s",
            attempts,
            str(error)[:300],
            extra={"partition": state.tp.partition, "start": intent.start, "end": intent.end},
        )
        del rows
        state.fold.clear()  # the range is re-read piece by piece; free its fold meanwhile
        try:
            await self.isolator.isolate(state.tp, intent, getattr(error, "landed", None))
        except BaseException:
            # Interrupted (stopping): the emptied fold must never be committed as done; the
            # intent stays, and the next owner replays and isolates the same way.
            self.partitions.states.pop(state.tp, None)
            raise

    async def retry(self, what: str, action: Callable[[], Awaitable[None]]) -> None:
        """Run ``action`` until it succeeds, backing off; consumption waits meanwhile."""
        backoff = 0.2
        while True:
            try:
                await action()
                return
            except Exception as exc:
                log.warning("%s failed: %s; retrying", what, str(exc)[:300])
                await self.gate.pause(backoff)
                backoff = min(backoff * 2, self.settings.retry_max_backoff_s)

    async def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata], phase: str) -> bool:
        """Commit; False (and the states dropped) if we no longer own the partitions."""
        consumer = self.clients.consumer
        assert consumer is not None
        backoff = 0.2
        while True:
            try:
                await consumer.commit(offsets)
                self.metrics.commits.labels(phase).inc()
                return True
            except LOST_OWNERSHIP as exc:
                self.metrics.commit_failures.labels(phase).inc()
                log.warning("commit (%s) refused, partitions lost: %r", phase, exc)
                for tp in offsets:
                    self.partitions.states.pop(tp, None)
                return False
            except KafkaError as exc:
                self.metrics.commit_failures.labels(phase).inc()
                log.warning("commit (%s) failed: %r; retrying", phase, exc)
                await self.gate.pause(backoff)
                backoff = min(backoff * 2, self.settings.retry_max_backoff_s)

    def _update_lag(self) -> None:
        """Lag per owned partition, in records and in seconds (what an autoscaler reads)."""
        consumer = self.clients.consumer
        if consumer is None:
            return
        now_ms = time.time() * 1000
        for tp, state in self.partitions.states.items():
            high = consumer.highwater(tp)
            if high is not None and state.start is not None:
                lag = max(0, high - state.start)
                self.metrics.lag.labels(str(tp.partition)).set(lag)
                # Records still to read are newer than the newest one fetched: its age is how
                # far behind the partition is in time.
                newest = state.newest_ms
                behind = 0.0 if lag == 0 or newest is None else max(0.0, now_ms - newest) / 1000
                self.metrics.lag_seconds.labels(str(tp.partition)).set(behind)
