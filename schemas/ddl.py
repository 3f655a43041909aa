"""ClickHouse DDL for the rollups: one stored table, one view per granularity.

``rollups`` holds every stored granularity (``1m``, ``1h``, ``1d`` by default; the aggregator
computes their buckets in the configured time zone), summed by an AggregatingMergeTree. The
views ``rollups_<g>`` expose each granularity already summed, with buckets shown in the
configured zone; ``1w``/``1mo``/``1q``/``1y`` are derived from the daily rows on the fly, with
the configured week start. Every statement is idempotent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tally.schemas.ddl_keys import key_statements
from tally.schemas.granularity import WEEKDAYS, Granularity

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
# AggregatingMergeTree, optionally with empty parentheses, or ReplicatedAggregatingMergeTree
# with no arguments (server defaults) or a Keeper path and a replica name made of path-safe
# characters and {macros}: nothing else can reach the DDL.
_ENGINE = re.compile(
    r"AggregatingMergeTree(\(\))?"
    r"|ReplicatedAggregatingMergeTree"
    r"(\(\)|\('[A-Za-z0-9_/{}.-]{1,200}', ?'[A-Za-z0-9_{}.-]{1,100}'\))?"
)
# Parts a flush writes per stored granularity: one per month it touches, normally one, two
# when its events straddle a month boundary (a backfill flush touching more months takes
# more). The dedup window, set in flushes, is stored in blocks: flushes x granularities x 2.
BLOCKS_PER_GRANULARITY_PER_FLUSH = 2
DEFAULT_DEDUP_WINDOW_FLUSHES = 100_000
DEFAULT_DEDUP_WINDOW_SECONDS = 7 * 86400
DERIVED_FROM_DAYS = ("1w", "1mo", "1q", "1y")
DEFAULT_TTL_DAYS = {"1m": 14, "1h": 400, "1d": 3650}
TABLE = "rollups"
INPUT_TABLE = "rollups_input"
EXPAND_VIEW = "rollups_expand"


def identifier(name: str) -> str:
    """``name`` if it is a safe ClickHouse identifier, else ValueError (no SQL from input)."""
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid database or table name")
    return name


@dataclass(frozen=True)
class RollupSchema:
    """What to create: database, stored granularities, their TTLs, the calendar."""

    database: str = "tally"
    stored: Sequence[str] = ("1m", "1h", "1d")
    ttl_days: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_TTL_DAYS))
    time_zone: str = "UTC"
    week_start: str = "monday"
    engine: str = "AggregatingMergeTree"
    dedup_window: int = DEFAULT_DEDUP_WINDOW_FLUSHES
    dedup_window_seconds: int = DEFAULT_DEDUP_WINDOW_SECONDS

    def __post_init__(self) -> None:
        identifier(self.database)
        for g in self.stored:
            Granularity.parse(g)
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {self.time_zone!r}") from exc
        if self.week_start not in WEEKDAYS:
            raise ValueError(f"week_start must be one of {WEEKDAYS}")
        if not isinstance(self.engine, str) or not _ENGINE.fullmatch(self.engine):
            raise ValueError(
                "engine must be AggregatingMergeTree or ReplicatedAggregatingMergeTree"
                "('<keeper path>', '<replica>') (letters, digits, _ / { } . - only)"
            )
        for name in ("dedup_window", "dedup_window_seconds"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(
                    f"{name} must be a positive integer, not {value!r}: 0 would turn off the"
                    " insert deduplication that exactly-once replays rely on"
                )

    @property
    def replicated(self) -> bool:
        """True for ReplicatedAggregatingMergeTree."""
        return self.engine.startswith("Replicated")

    @property
    def dedup_window_blocks(self) -> int:
        """The dedup window in blocks (what ClickHouse counts): flushes x granularities x 2."""
        return self.dedup_window * len(self.stored) * BLOCKS_PER_GRANULARITY_PER_FLUSH

    def dedup_settings(self) -> dict[str, int]:
        """The table's dedup-window settings (applied at CREATE and by ALTER on every start).

        A replicated table keeps block ids in Keeper for ``replicated_deduplication_window``
        blocks and ``..._seconds``; a plain one keeps ``non_replicated_deduplication_window``
        block ids (no time limit).
        """
        if self.replicated:
            return {
                "replicated_deduplication_window": self.dedup_window_blocks,
                "replicated_deduplication_window_seconds": int(self.dedup_window_seconds),
            }
        return {"non_replicated_deduplication_window": self.dedup_window_blocks}

    def dedup_settings_sql(self) -> str:
        """``name = value, ...`` for SETTINGS / MODIFY SETTING."""
        return ", ".join(f"{k} = {int(v)}" for k, v in self.dedup_settings().items())

    @property
    def table(self) -> str:
        """Fully qualified name of the stored table."""
        return f"{self.database}.{TABLE}"

    @property
    def input_table(self) -> str:
        """Where the aggregator inserts folded sums: a Null table, expanded by a view."""
        return f"{self.database}.{INPUT_TABLE}"

    @property
    def expand_view(self) -> str:
        """The materialized view that expands ``rollups_input`` into ``rollups``."""
        return f"{self.database}.{EXPAND_VIEW}"

    def bucket_expression(self, granularity: str) -> str:
        """SQL for the bucket start of ``minute`` at ``granularity`` in the configured zone.

        Mirrors ``Calendar.floor`` (the Python oracle the tests compare against).
        """
        g, tz = Granularity.parse(granularity), self.time_zone
        day = f"toDate(minute, '{tz}')"
        start = WEEKDAYS.index(self.week_start) + 1  # ClickHouse: Monday = 1
        if g.unit == "m":
            return (
                "minute"
                if g.n == 1
                else f"toStartOfInterval(minute, INTERVAL {g.n} MINUTE, '{tz}')"
            )
        if g.unit == "h":
            return f"toStartOfInterval(minute, INTERVAL {g.n} HOUR, '{tz}')"
        local_day = {
            "d": day,
            "w": f"addDays({day}, -((toDayOfWeek({day}) - {start} + 7) % 7))",
            "mo": f"toStartOfInterval({day}, INTERVAL {g.n} MONTH)",
            "q": f"toStartOfQuarter({day})",
            "y": f"toStartOfYear({day})",
        }[g.unit]
        return f"toDateTime({local_day}, '{tz}')"

    def expand_query(self) -> str:
        """The view's SELECT: one row per (granularity, key, bucket, path), summed.

        ``ORDER BY`` keeps the output order a function of the input alone, so a replayed
        insert splits into the same blocks and ClickHouse's per-block dedup tokens line up.
        """
        buckets = ", ".join(
            f"granularity = '{g}', {self.bucket_expression(g)}" for g in self.stored
        )
        grans = ", ".join(f"'{g}'" for g in self.stored)
        return f"""SELECT granularity, key, toDateTime(multiIf({buckets}, minute), 'UTC') AS bucket,
       path, sum(value) AS value
FROM (
    SELECT key, minute, path, sum(value) AS value
    FROM {self.input_table}
    ARRAY JOIN keys AS key
    ARRAY JOIN paths AS path, values AS value
    GROUP BY key, minute, path
)
ARRAY JOIN [{grans}] AS granularity
GROUP BY granularity, key, bucket, path
ORDER BY granularity, key, path, bucket"""

    def ttl_clause(self) -> str:
        """The TTL expression: each granularity keeps its own number of days."""
        arms = ", ".join(
            f"granularity = '{g}', {int(self.ttl_days.get(g, 3650))}" for g in self.stored
        )
        return f"bucket + toIntervalDay(multiIf({arms}, 3650))"

    def statements(self) -> list[str]:
        """All DDL, in order; safe to run on every start."""
        db, tz = self.database, self.time_zone
        out = [
            f"CREATE DATABASE IF NOT EXISTS {db}",
            f"""CREATE TABLE IF NOT EXISTS {self.table} (
    granularity LowCardinality(String) COMMENT 'stored granularity, e.g. 1m 1h 1d',
    key String COMMENT 'metric key, e.g. calc or calc::tenant42',
    bucket DateTime('UTC') COMMENT 'bucket start (computed in the configured zone)',
    path LowCardinality(String) COMMENT 'dotted value path, e.g. duration.sum',
    value SimpleAggregateFunction(sum, Float64) COMMENT 'sum of tracked values'
) ENGINE = {self.engine}
PARTITION BY (granularity, toYYYYMM(bucket))
ORDER BY (granularity, key, path, bucket)
TTL {self.ttl_clause()}
SETTINGS {self.dedup_settings_sql()}""",
            f"""CREATE TABLE IF NOT EXISTS {self.input_table} (
    keys Array(String) COMMENT 'the keys the events fan out to',
    minute DateTime('UTC') COMMENT 'start of the minute the events fall in',
    paths Array(LowCardinality(String)) COMMENT 'dotted value paths',
    values Array(Float64) COMMENT 'sums, one per path'
) ENGINE = Null""",
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {self.expand_view} TO {self.table}\n"
            f"AS {self.expand_query()}",
        ]
        for g in self.stored:
            out.append(
                f"""CREATE OR REPLACE VIEW {db}.rollups_{g} AS
SELECT key, toTimeZone(bucket, '{tz}') AS bucket, path, sum(value) AS value
FROM {self.table} WHERE granularity = '{g}'
GROUP BY key, bucket, path"""
            )
        out += key_statements(db, self.input_table, self.ttl_days, self.stored)
        if "1d" in self.stored:
            for g in DERIVED_FROM_DAYS:
                if g not in self.stored:
                    out.append(self._derived_view(g))
        return out

    def _derived_view(self, g: str) -> str:
        tz = self.time_zone
        start = WEEKDAYS.index(self.week_start) + 1  # ClickHouse: Monday = 1
        local_start = {
            "1w": f"addDays(d, -((toDayOfWeek(d) - {start} + 7) % 7))",
            "1mo": "toStartOfMonth(d)",
            "1q": "toStartOfQuarter(d)",
            "1y": "toStartOfYear(d)",
        }[g]
        return f"""CREATE OR REPLACE VIEW {self.database}.rollups_{g} AS
SELECT key, toDateTime({local_start}, '{tz}') AS bucket, path, sum(value) AS value
FROM (SELECT key, toDate(bucket, '{tz}') AS d, path, value
      FROM {self.table} WHERE granularity = '1d')
GROUP BY key, bucket, path"""
