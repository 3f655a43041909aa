"""Alert state, transition history and the notification outbox, in ClickHouse.

Three tables of our own, created idempotently in the rollups' database:

- ``monitor_state`` (ReplacingMergeTree by ``version``): one row per monitor and segment,
  read with ``FINAL``; the newest version wins.
- ``monitor_history`` (MergeTree): one row per transition, for the dashboard and audits.
- ``monitor_notifications`` (ReplacingMergeTree by ``version``): the outbox, one row per
  notification id and channel: ``pending`` when judged, then ``delivered`` or ``failed``;
  ``held`` while its channel cannot deliver as configured (sent once fixed); ``skipped`` for
  a resolved notice whose firing notice that channel never got.
  Ids are deterministic, and a notice is inserted only when its id is absent, so judging a
  bucket twice (a restart before the state was saved, a lease hand-over) never re-sends.

Order of writes per evaluation: outbox (new ids only), history, then state. A crash before
the state write re-judges the same buckets on restart, which finds the same ids in the outbox.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from tally.monitors.engine import Notice
from tally.monitors.evaluate import Segment
from tally.monitors.state import AlertState, Transition
from tally.read.connection import connect_async
from tally.read.settings import ReadSettings
from tally.schemas.ddl import identifier
from tally.schemas.placement import SINGLE_SERVER, Placement

NO_WAIT = {"async_insert": 0}


def ddl(database: str, placement: Placement = SINGLE_SERVER) -> list[str]:
    """CREATE statements (idempotent), on one server or ``placement``'s replicas."""
    db, c = identifier(database), placement.on_cluster()
    replacing = placement.engine("ReplacingMergeTree", "version")
    return [
        f"""CREATE TABLE IF NOT EXISTS {db}.monitor_state{c} (
    monitor String, segment String, key String, state LowCardinality(String),
    since UInt32, clear_since UInt32, last_bucket UInt32, notified_at UInt32,
    value Nullable(Float64), message String, updated DateTime64(3, 'UTC'), version UInt64
) ENGINE = {replacing} ORDER BY (monitor, segment)""",
        f"""CREATE TABLE IF NOT EXISTS {db}.monitor_history{c} (
    at DateTime64(3, 'UTC'), monitor String, segment String, key String,
    bucket DateTime('UTC'), before LowCardinality(String), after LowCardinality(String),
    notify LowCardinality(String), since UInt32, value Nullable(Float64)
) ENGINE = {placement.engine("MergeTree")} ORDER BY (monitor, segment, bucket)""",
        f"""CREATE TABLE IF NOT EXISTS {db}.monitor_notifications{c} (
    id String, channel String, monitor String, segment String, kind LowCardinality(String),
    bucket DateTime('UTC'), payload String, status LowCardinality(String), attempts UInt32,
    last_error String, created DateTime64(3, 'UTC'), updated DateTime64(3, 'UTC'),
    version UInt64
) ENGINE = {replacing} ORDER BY (id, channel)""",
        f"""CREATE TABLE IF NOT EXISTS {db}.monitor_reports{c} (
    report String, period_end DateTime('UTC'), channel String, status LowCardinality(String),
    error String, at DateTime64(3, 'UTC')
) ENGINE = {placement.engine("ReplacingMergeTree")} ORDER BY (report, period_end, channel)""",
    ]


@dataclass(frozen=True)
class Outgoing:
    """A notification waiting for (or done with) one channel."""

    id: str
    channel: str
    notice: Notice
    status: str
    attempts: int
    error: str = ""


def _dt(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _version() -> int:
    return time.time_ns()


def notice_json(n: Notice) -> str:
    return json.dumps(asdict(n), sort_keys=True)


def notice_from_json(text: str) -> Notice:
    return Notice(**json.loads(text))


class Store:
    """The monitor tables, on an async clickhouse-connect client."""

    def __init__(self, settings: ReadSettings) -> None:
        self.settings = settings
        self.db = identifier(settings.database)
        self._client: Any = None

    async def start(self, create: bool = True) -> None:
        """Connect; with ``create``, create the tables if missing (idempotent)."""
        if self._client is None:
            self._client = await connect_async(self.settings)
        if create:
            for statement in ddl(self.settings.database, self.settings.clickhouse.placement):
                await self._client.command(statement)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def states(self, monitor: str) -> dict[Segment, AlertState]:
        """The newest state of every segment of ``monitor``."""
        result = await self._client.query(
            f"""SELECT segment, key, state, since, clear_since, last_bucket, notified_at, value,
       message FROM {self.db}.monitor_state FINAL WHERE monitor = {{m:String}}""",
            parameters={"m": monitor},
        )
        return {
            Segment(r[0], r[1]): AlertState(r[2], r[3], r[4], r[5], r[6], r[7], r[8])
            for r in result.result_rows
        }

    async def all_states(self) -> list[tuple[str, Segment, AlertState]]:
        """Every monitor's segments (for listing)."""
        result = await self._client.query(
            f"""SELECT monitor, segment, key, state, since, clear_since, last_bucket, notified_at,
       value, message FROM {self.db}.monitor_state FINAL ORDER BY monitor, segment"""
        )
        return [
            (r[0], Segment(r[1], r[2]), AlertState(r[3], r[4], r[5], r[6], r[7], r[8], r[9]))
            for r in result.result_rows
        ]

    async def save(
        self,
        monitor: str,
        states: dict[Segment, AlertState],
        changed: Iterable[Segment],
        transitions: list[tuple[Segment, Transition]],
        notices: list[Notice],
        channels: dict[str, tuple[str, ...]],
    ) -> None:
        """Outbox (absent ids only), then history, then state: see the module docstring."""
        now = datetime.now(UTC)
        if notices:
            known = await self._known_ids([n.id for n in notices])
            rows = []
            for n in notices:
                if n.id in known:
                    continue
                for channel in channels.get(n.monitor, ("log",)):
                    row = [n.id, channel, n.monitor, n.segment, n.kind, _dt(n.bucket),
                           notice_json(n), "pending", 0, "", now, now, _version()]  # fmt: skip
                    rows.append(row)
            if rows:
                await self._insert("monitor_notifications", rows, _NOTIFICATION_COLUMNS)
        if transitions:
            rows = [
                [now, monitor, s.name, s.key, _dt(t.bucket), t.before, t.after, t.notify, t.since,
                 t.value]
                for s, t in transitions
            ]  # fmt: skip
            await self._insert("monitor_history", rows, _HISTORY_COLUMNS)
        rows = [
            [monitor, s.name, s.key, st.state, st.since, st.clear_since, st.last_bucket,
             st.notified_at, st.value, st.message[:2000], now, _version()]
            for s in changed
            for st in (states[s],)
        ]  # fmt: skip
        if rows:
            await self._insert("monitor_state", rows, _STATE_COLUMNS)

    async def _known_ids(self, ids: list[str]) -> set[str]:
        result = await self._client.query(
            f"SELECT DISTINCT id FROM {self.db}.monitor_notifications"
            " WHERE id IN {ids:Array(String)}",
            parameters={"ids": ids},
        )
        return {r[0] for r in result.result_rows}

    async def pending(self, limit: int = 1000) -> list[Outgoing]:
        """Notifications not yet delivered: ``pending``, and ``held`` for a channel that could
        not deliver as configured (oldest bucket first)."""
        result = await self._client.query(
            f"""SELECT id, channel, payload, status, attempts, last_error
FROM {self.db}.monitor_notifications FINAL WHERE status IN ('pending', 'held')
ORDER BY bucket, created LIMIT {{n:UInt32}}""",
            parameters={"n": limit},
        )
        return [
            Outgoing(r[0], r[1], notice_from_json(r[2]), r[3], r[4], r[5])
            for r in result.result_rows
        ]

    async def firing_statuses(self, out: Outgoing) -> set[str]:
        """Statuses on ``out``'s channel of the firing (and repeat) notices of the episode a
        resolved notice ``out`` ends (same monitor, segment and episode start)."""
        n = out.notice
        result = await self._client.query(
            f"""SELECT DISTINCT status FROM {self.db}.monitor_notifications FINAL
WHERE monitor = {{m:String}} AND segment = {{s:String}} AND channel = {{c:String}}
  AND kind IN ('firing', 'repeat') AND JSONExtractUInt(payload, 'since') = {{since:UInt32}}""",
            parameters={"m": n.monitor, "s": n.segment, "c": out.channel, "since": n.since},
        )
        return {r[0] for r in result.result_rows}

    async def status(self, ids: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """Current status of (id, channel) pairs (another replica may have delivered them)."""
        if not ids:
            return {}
        result = await self._client.query(
            f"""SELECT id, channel, status FROM {self.db}.monitor_notifications FINAL
WHERE id IN {{ids:Array(String)}}""",
            parameters={"ids": [i for i, _ in ids]},
        )
        return {(r[0], r[1]): r[2] for r in result.result_rows}

    async def mark(self, out: Outgoing, status: str, attempts: int, error: str = "") -> None:
        """Record a delivery outcome (``delivered`` or ``failed``)."""
        now = datetime.now(UTC)
        n = out.notice
        row = [out.id, out.channel, n.monitor, n.segment, n.kind, _dt(n.bucket), notice_json(n),
               status, attempts, error[:2000], now, now, _version()]  # fmt: skip
        await self._insert("monitor_notifications", [row], _NOTIFICATION_COLUMNS)

    async def delivery_counts(self) -> dict[str, int]:
        """Notifications by status (``failed`` ones are the failed deliveries)."""
        result = await self._client.query(
            f"SELECT status, count() FROM {self.db}.monitor_notifications FINAL GROUP BY status"
        )
        return {r[0]: int(r[1]) for r in result.result_rows}

    async def history(self, monitor: str | None = None, limit: int = 1000) -> list[tuple]:
        """Recent transitions, newest first."""
        result = await self._client.query(
            f"""SELECT toUInt32(bucket), monitor, segment, before, after, notify, value
FROM {self.db}.monitor_history WHERE {{m:String}} = '' OR monitor = {{m:String}}
ORDER BY bucket DESC, at DESC LIMIT {{n:UInt32}}""",
            parameters={"m": monitor or "", "n": limit},
        )
        return [tuple(r) for r in result.result_rows]

    async def transitions(
        self, monitor: str, segment: str, limit: int = 2000
    ) -> list[tuple[int, str, str, int]]:
        """``(bucket, before, after, since)`` of one segment's firing and resolving
        transitions, the newest ``limit`` (for its firing windows)."""
        result = await self._client.query(
            f"""SELECT toUInt32(bucket) AS b, before, after, since FROM {self.db}.monitor_history
WHERE monitor = {{m:String}} AND segment = {{s:String}} AND after IN ('firing', 'resolved')
ORDER BY b DESC LIMIT {{n:UInt32}}""",
            parameters={"m": monitor, "s": segment, "n": limit},
        )
        return [(int(r[0]), r[1], r[2], int(r[3])) for r in result.result_rows]

    async def report_sent(self, report: str, period_end: int) -> set[str]:
        """Channels a report's period was already sent to (delivered, or failed after the
        notifier's retries: a failed digest is recorded and logged, not re-sent every tick)."""
        result = await self._client.query(
            f"""SELECT channel FROM {self.db}.monitor_reports FINAL
WHERE report = {{r:String}} AND period_end = toDateTime({{e:UInt32}}, 'UTC')""",
            parameters={"r": report, "e": period_end},
        )
        return {r[0] for r in result.result_rows}

    async def mark_report(
        self, report: str, period_end: int, channel: str, status: str, error: str = ""
    ) -> None:
        """Record a digest delivery."""
        row = [report, _dt(period_end), channel, status, error[:2000], datetime.now(UTC)]
        columns = ["report", "period_end", "channel", "status", "error", "at"]
        await self._insert("monitor_reports", [row], columns)

    async def _insert(self, table: str, rows: list[list], columns: list[str]) -> None:
        await self._client.insert(
            f"{self.db}.{table}", rows, column_names=columns, settings=NO_WAIT
        )


_STATE_COLUMNS = ["monitor", "segment", "key", "state", "since", "clear_since", "last_bucket",
                  "notified_at", "value", "message", "updated", "version"]  # fmt: skip
_HISTORY_COLUMNS = ["at", "monitor", "segment", "key", "bucket", "before", "after", "notify",
                    "since", "value"]  # fmt: skip
_NOTIFICATION_COLUMNS = ["id", "channel", "monitor", "segment", "kind", "bucket", "payload",
                         "status", "attempts", "last_error", "created", "updated",
                         "version"]  # fmt: skip
