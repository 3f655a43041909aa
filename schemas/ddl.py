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

from tally.schemas.ddl_keys import KEYS_TABLE, PATHS_TABLE, key_statements
from tally.schemas.granularity import WEEKDAYS, Granularity
from tally.schemas.placement import SINGLE_SERVER, Placement, settings_sql

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
# more). The dedup window, set in flushes, is stored in blocks: flushes x granularities x 2,
# times the views writing ``rollups`` (summed values; distributions and gauges).
BLOCKS_PER_GRANULARITY_PER_FLUSH = 2
VIEWS_INTO_ROLLUPS = 2
DEFAULT_DEDUP_WINDOW_FLUSHES = 100_000
DEFAULT_DEDUP_WINDOW_SECONDS = 7 * 86400
DERIVED_FROM_DAYS = ("1w", "1mo", "1q", "1y")
DEFAULT_TTL_DAYS = {"1m": 14, "1h": 400, "1d": 3650}
TABLE = "rollups"
INPUT_TABLE = "rollups_input"
EXPAND_VIEW = "rollups_expand"
KINDS_VIEW = "rollups_kinds"
# Columns added for distributions and gauges (also ALTERed into tables that predate them).
ROLLUP_KIND_COLUMNS = (
    (
        "sketch",
        "SimpleAggregateFunction(sumMap, Map(Int16, UInt64))",
        "distribution: samples per logarithmic bucket (schemas/sketch.py)",
    ),
    (
        "vmin",
        "SimpleAggregateFunction(min, Nullable(Float64))",
        "distribution or gauge: smallest value (NULL for summed paths)",
    ),
    (
        "vmax",
        "SimpleAggregateFunction(max, Nullable(Float64))",
        "distribution or gauge: largest value (NULL for summed paths)",
    ),
    (
        "last",
        "SimpleAggregateFunction(max, Tuple(Int64, Float64))",
        "gauge: (unix ms, value) of the last reading; a tie goes to the larger value",
    ),
)
INPUT_KIND_COLUMNS = (
    ("kind", "UInt8 DEFAULT 0", "0 summed values, 1 a distribution, 2 a gauge"),
    ("path", "String DEFAULT ''", "the path of a distribution or gauge row"),
    ("sketch_keys", "Array(Int16)", "distribution buckets"),
    ("sketch_counts", "Array(UInt64)", "samples per bucket"),
    ("stats", "Array(Float64)", "distribution count, sum, sum of squares"),
    ("vmin", "Nullable(Float64)", "smallest sample or gauge value"),
    ("vmax", "Nullable(Float64)", "largest sample or gauge value"),
    ("last", "Tuple(Int64, Float64)", "gauge: (unix ms, value) of the last reading"),
)  # fmt: skip
SKETCH_PREFIX = "sketches_"


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
    placement: Placement = SINGLE_SERVER

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
        """True for ReplicatedAggregatingMergeTree (named, or implied by a replicated placement)."""
        return self.engine.startswith("Replicated") or self.placement.replicated

    @property
    def table_engine(self) -> str:
        """The rollups table's engine: ``engine`` as given, or replicated by the placement."""
        if self.engine.startswith("Replicated") or not self.placement.replicated:
            return self.engine
        return self.placement.engine("AggregatingMergeTree")

    @property
    def key_placement(self) -> Placement:
        """The key tables follow the rollups table: replicated when it is."""
        return Placement(self.placement.cluster, self.replicated)

    @property
    def dedup_window_blocks(self) -> int:
        """The dedup window in blocks (what ClickHouse counts): flushes x granularities x 2."""
        return (
            self.dedup_window
            * len(self.stored)
            * BLOCKS_PER_GRANULARITY_PER_FLUSH
            * VIEWS_INTO_ROLLUPS
        )

    def dedup_settings(self) -> dict[str, int]:
        """The table's dedup-window settings (applied at CREATE and by ALTER on every start).

        A replicated table keeps block ids in Keeper for ``replicated_deduplication_window``
        blocks and ``..._seconds``; a plain one keeps ``non_replicated_deduplication_window``
        block ids (no time limit).
        """
        return self.key_placement.dedup_window(self.dedup_window_blocks, self.dedup_window_seconds)

    def dedup_settings_sql(self) -> str:
        """``name = value, ...`` for SETTINGS / MODIFY SETTING."""
        return settings_sql(self.dedup_settings())

    def alignment_statements(self) -> list[str]:
        """ALTERs that make the views' queries and the dedup window follow the flags
        (``CREATE ... IF NOT EXISTS`` leaves existing objects alone).

        ``MODIFY QUERY`` is atomic: a changed zone, week start or granularity set takes effect
        without a moment in which inserts into ``rollups_input`` would go nowhere. Run it only
        for a view whose query differs (``RollupSink.apply_ddl``): ClickHouse 26.9 gives the
        blocks a view writes other dedup ids after ``MODIFY QUERY`` than after loading the view
        at startup, so an unneeded one on every start made replays across a ClickHouse restart
        count twice.
        """
        return [
            *(self.modify_query_statement(view) for view in self.view_queries()),
            self.dedup_setting_statement(),
        ]

    def view_queries(self) -> dict[str, str]:
        """Each materialized view into ``rollups`` (qualified name) and its wanted SELECT."""
        return {self.expand_view: self.expand_query(), self.kinds_view: self.kinds_query()}

    def modify_query_statement(self, view: str) -> str:
        """The ALTER that gives ``view`` its wanted query (see ``alignment_statements``)."""
        c = self.placement.on_cluster()
        return f"ALTER TABLE {view}{c} MODIFY QUERY {self.view_queries()[view]}"

    def dedup_setting_statement(self) -> str:
        """The ALTER that applies the dedup window (harmless to dedup ids: run on every start)."""
        c = self.placement.on_cluster()
        return f"ALTER TABLE {self.table}{c} MODIFY SETTING {self.dedup_settings_sql()}"

    def ttl_statement(self) -> str:
        """The ALTER that applies the configured TTL (run when the table's differs)."""
        c = self.placement.on_cluster()
        return f"ALTER TABLE {self.table}{c} MODIFY TTL {self.ttl_clause()}"

    @property
    def table(self) -> str:
        """Fully qualified name of the stored table."""
        return f"{self.database}.{TABLE}"

    @property
    def keys_table(self) -> str:
        """The key index per (key, UTC day), written by the aggregator (``ddl_keys``)."""
        return f"{self.database}.{KEYS_TABLE}"

    @property
    def paths_table(self) -> str:
        """The key index per (key, path), written by the aggregator (``ddl_keys``)."""
        return f"{self.database}.{PATHS_TABLE}"

    @property
    def input_table(self) -> str:
        """Where the aggregator inserts folded sums: a Null table, expanded by a view."""
        return f"{self.database}.{INPUT_TABLE}"

    @property
    def kinds_view(self) -> str:
        """The materialized view that expands distribution and gauge rows into ``rollups``."""
        return f"{self.database}.{KINDS_VIEW}"

    def kinds_query(self) -> str:
        """The kinds view's SELECT: per (granularity, key, bucket, path) one row.

        A distribution at ``P`` gives the row ``P`` (sketch, min, max) and the summed rows
        ``P.count``, ``P.sum``, ``P.square``; a gauge gives the row ``P`` (last, min, max).
        Sorted like ``expand_query`` so a replay forms the same blocks.
        """
        buckets = ", ".join(
            f"granularity = '{g}', {self.bucket_expression(g)}" for g in self.stored
        )
        grans = ", ".join(f"'{g}'" for g in self.stored)
        return f"""SELECT granularity, key, toDateTime(multiIf({buckets}, minute), 'UTC') AS bucket,
       p AS path, sum(v) AS value, sumMap(sk) AS sketch, min(lo) AS vmin, max(hi) AS vmax,
       max(lt) AS last
FROM (
    SELECT key, minute, concat(dp, part.1) AS p, part.2 AS v,
           if(part.1 = '', dsk, map()) AS sk, if(part.1 = '', dlo, NULL) AS lo,
           if(part.1 = '', dhi, NULL) AS hi, if(part.1 = '', dlt, (0, 0.)) AS lt
    FROM (
        SELECT key, minute, path AS dp, any(kind) AS dk,
               sumMap(CAST((sketch_keys, sketch_counts), 'Map(Int16, UInt64)')) AS dsk,
               min(vmin) AS dlo, max(vmax) AS dhi, max(last) AS dlt,
               sumForEach(stats) AS dst
        FROM {self.input_table}
        ARRAY JOIN keys AS key
        WHERE kind != 0
        GROUP BY key, minute, dp
    )
    ARRAY JOIN arrayZip(
        if(dk = 1, ['', '.count', '.sum', '.square'], ['']),
        if(dk = 1, arrayConcat([0.], dst), [0.])
    ) AS part
)
ARRAY JOIN [{grans}] AS granularity
GROUP BY granularity, key, bucket, path
ORDER BY granularity, key, path, bucket"""

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
            return "minute" if g.n == 1 else f"toStartOfInterval(minute, {g.sql_interval}, '{tz}')"
        if g.unit == "h":
            return f"toStartOfInterval(minute, {g.sql_interval}, '{tz}')"
        local_day = {
            "d": day,
            "w": f"addDays({day}, -((toDayOfWeek({day}) - {start} + 7) % 7))",
            "mo": f"toStartOfInterval({day}, {g.sql_interval})",
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
        db, tz, c = self.database, self.time_zone, self.placement.on_cluster()
        out = [
            f"CREATE DATABASE IF NOT EXISTS {db}{c}",
            f"""CREATE TABLE IF NOT EXISTS {self.table}{c} (
    granularity LowCardinality(String) COMMENT 'stored granularity, e.g. 1m 1h 1d',
    key String COMMENT 'metric key, e.g. calc or calc::tenant42',
    bucket DateTime('UTC') COMMENT 'bucket start (computed in the configured zone)',
    path LowCardinality(String) COMMENT 'dotted value path, e.g. duration.sum',
    value SimpleAggregateFunction(sum, Float64) COMMENT 'sum of tracked values',
{_columns(ROLLUP_KIND_COLUMNS)}
) ENGINE = {self.table_engine}
PARTITION BY (granularity, toYYYYMM(bucket))
ORDER BY (granularity, key, path, bucket)
TTL {self.ttl_clause()}
SETTINGS {self.dedup_settings_sql()}""",
            f"""CREATE TABLE IF NOT EXISTS {self.input_table}{c} (
    keys Array(String) COMMENT 'the keys the events fan out to',
    minute DateTime('UTC') COMMENT 'start of the minute the events fall in',
    paths Array(LowCardinality(String)) COMMENT 'dotted value paths',
    values Array(Float64) COMMENT 'sums, one per path',
{_columns(INPUT_KIND_COLUMNS)}
) ENGINE = Null""",
            *_add_columns(self.table + c, ROLLUP_KIND_COLUMNS),
            *_add_columns(self.input_table + c, INPUT_KIND_COLUMNS),
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {self.expand_view}{c} TO {self.table}\n"
            f"AS {self.expand_query()}",
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {self.kinds_view}{c} TO {self.table}\n"
            f"AS {self.kinds_query()}",
        ]
        for g in self.stored:
            out.append(
                f"""CREATE OR REPLACE VIEW {db}.rollups_{g}{c} AS
SELECT key, toTimeZone(bucket, '{tz}') AS bucket, path, sum(value) AS value
FROM {self.table} WHERE granularity = '{g}' AND vmin IS NULL
GROUP BY key, bucket, path"""
            )
            out.append(self._sketch_view(g, "bucket", g))
        out += key_statements(db, self.ttl_days, self.stored, self.key_placement)
        if "1d" in self.stored:
            for g in DERIVED_FROM_DAYS:
                if g not in self.stored:
                    out.append(self._derived_view(g))
                    out.append(self._sketch_view(g, self._derived_bucket(g), "1d"))
        return out

    def _derived_bucket(self, g: str) -> str:
        """The bucket of a derived ``g`` (week, month, ...) from a ``1d`` row's ``bucket``."""
        tz = self.time_zone
        d = f"toDate(bucket, '{tz}')"
        start = WEEKDAYS.index(self.week_start) + 1
        local_start = {
            "1w": f"addDays({d}, -((toDayOfWeek({d}) - {start} + 7) % 7))",
            "1mo": f"toStartOfMonth({d})",
            "1q": f"toStartOfQuarter({d})",
            "1y": f"toStartOfYear({d})",
        }[g]
        return f"toDateTime({local_start}, '{tz}')"

    def _sketch_view(self, g: str, bucket: str, source: str) -> str:
        """``sketches_<g>``: distribution and gauge rows merged per (key, bucket, path).

        ``bucket`` computes the bucket from the ``source`` granularity's rows. Only rows that
        hold a distribution or a gauge (``vmin`` not NULL) are read.
        """
        tz = self.time_zone
        c = self.placement.on_cluster()
        return f"""CREATE OR REPLACE VIEW {self.database}.{SKETCH_PREFIX}{g}{c} AS
SELECT key, toTimeZone(b, '{tz}') AS bucket, path, sumMap(sketch) AS sketch,
       min(vmin) AS vmin, max(vmax) AS vmax, max(last) AS last
FROM (SELECT key, path, sketch, vmin, vmax, last, {bucket} AS b
      FROM {self.table} WHERE granularity = '{source}' AND vmin IS NOT NULL)
GROUP BY key, b, path"""

    def _derived_view(self, g: str) -> str:
        tz = self.time_zone
        start = WEEKDAYS.index(self.week_start) + 1  # ClickHouse: Monday = 1
        local_start = {
            "1w": f"addDays(d, -((toDayOfWeek(d) - {start} + 7) % 7))",
            "1mo": "toStartOfMonth(d)",
            "1q": "toStartOfQuarter(d)",
            "1y": "toStartOfYear(d)",
        }[g]
        c = self.placement.on_cluster()
        return f"""CREATE OR REPLACE VIEW {self.database}.rollups_{g}{c} AS
SELECT key, toDateTime({local_start}, '{tz}') AS bucket, path, sum(value) AS value
FROM (SELECT key, toDate(bucket, '{tz}') AS d, path, value
      FROM {self.table} WHERE granularity = '1d' AND vmin IS NULL)
GROUP BY key, bucket, path"""


def _columns(columns: tuple[tuple[str, str, str], ...]) -> str:
    return ",\n".join(f"    {name} {kind} COMMENT '{comment}'" for name, kind, comment in columns)


def _add_columns(table: str, columns: tuple[tuple[str, str, str], ...]) -> list[str]:
    """ALTERs that add ``columns`` to a table created before they existed (no-op after)."""
    return [
        f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {name} {kind} COMMENT '{comment}'"
        for name, kind, comment in columns
    ]
