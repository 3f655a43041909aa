"""The trace tables: an execution index, trace lines and the job log (one TTL per table).

Laid out after the OpenTelemetry Collector's ``otel_traces`` (ZSTD codecs, Delta on times,
LowCardinality names, a ``Map`` of tags, bloom filters on ids, day partitions dropped whole by
TTL) and Uptrace's index/data split: ``trace_executions`` is ordered for "executions of this key
in this time range", ``trace_lines`` by ``(execution_id, seq)`` so one execution's trace is one
primary-key range. Every table keeps insert dedup tokens (``non_replicated_deduplication_window``,
or the replicated window in Keeper on a cluster: ``schemas/placement.py``) so a writer replaying a
range after a crash adds nothing twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tally.schemas.placement import SINGLE_SERVER, Placement, settings_sql

EXECUTIONS = "trace_executions"
LINES = "trace_lines"
JOB_LOG = "job_log"
# Added after the first release: CREATE has them, ``alter_statements`` adds them to old tables.
EXECUTION_ADDED = (
    "error_message String DEFAULT '' CODEC(ZSTD(3))",
    "error_traceback String DEFAULT '' CODEC(ZSTD(3))",
    "args String DEFAULT '' CODEC(ZSTD(3))",
    # the framework hook's key when a decorator adopted its run (``key`` is the decorator's)
    "hook_key LowCardinality(String) DEFAULT '' CODEC(ZSTD(1))",
)
# Who ran: the columns an execution and its job log events share.
_IDENTITY = (
    "execution_id String CODEC(ZSTD(1))",
    "parent_id String CODEC(ZSTD(1))",
    "ref String CODEC(ZSTD(1))",
    "job LowCardinality(String) CODEC(ZSTD(1))",
    "tenant LowCardinality(String) CODEC(ZSTD(1))",
    "key LowCardinality(String) CODEC(ZSTD(1))",
)
_EXECUTION_COLUMNS = (
    *_IDENTITY,
    "state LowCardinality(String) CODEC(ZSTD(1))",
    "code LowCardinality(String) CODEC(ZSTD(1))",
    "error LowCardinality(String) CODEC(ZSTD(1))",
    "attempt UInt16 CODEC(ZSTD(1))",
    "started DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1))",
    "duration_us UInt64 CODEC(T64, ZSTD(1))",
    "tags Map(LowCardinality(String), String) CODEC(ZSTD(1))",
    "sampled LowCardinality(String) CODEC(ZSTD(1))",
    "lines UInt32 CODEC(T64, ZSTD(1))",
    "dropped UInt32 CODEC(T64, ZSTD(1))",
    *EXECUTION_ADDED,
    "INDEX idx_execution_id execution_id TYPE bloom_filter(0.001) GRANULARITY 1",
    "INDEX idx_parent_id parent_id TYPE bloom_filter(0.001) GRANULARITY 1",
    "INDEX idx_tag_keys mapKeys(tags) TYPE bloom_filter(0.01) GRANULARITY 1",
    "INDEX idx_tag_values mapValues(tags) TYPE bloom_filter(0.01) GRANULARITY 1",
)
_LINE_COLUMNS = (
    "execution_id String CODEC(ZSTD(1))",
    "started DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1))",
    "seq UInt32 CODEC(Delta, ZSTD(1))",
    "parent UInt32 CODEC(ZSTD(1))",
    "depth UInt16 CODEC(ZSTD(1))",
    "kind LowCardinality(String) CODEC(ZSTD(1))",
    "name String CODEC(ZSTD(1))",
    "offset_us UInt64 CODEC(T64, ZSTD(1))",
    "duration_us UInt64 CODEC(T64, ZSTD(1))",
    "outcome LowCardinality(String) CODEC(ZSTD(1))",
    "text String CODEC(ZSTD(3))",
    "truncated Bool CODEC(ZSTD(1))",
    "size UInt32 CODEC(T64, ZSTD(1))",
    "INDEX idx_execution_id execution_id TYPE bloom_filter(0.001) GRANULARITY 1",
)
_JOB_LOG_COLUMNS = (
    "at DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1))",
    *_IDENTITY,
    "event LowCardinality(String) CODEC(ZSTD(1))",
    "state LowCardinality(String) CODEC(ZSTD(1))",
    "attempt UInt16 CODEC(ZSTD(1))",
    "args String CODEC(ZSTD(3))",
    "detail String CODEC(ZSTD(1))",
    "tags Map(LowCardinality(String), String) CODEC(ZSTD(1))",
    "INDEX idx_execution_id execution_id TYPE bloom_filter(0.001) GRANULARITY 1",
    "INDEX idx_ref ref TYPE bloom_filter(0.001) GRANULARITY 1",
    "INDEX idx_tag_values mapValues(tags) TYPE bloom_filter(0.01) GRANULARITY 1",
)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


@dataclass(frozen=True)
class TraceSchema:
    """Database, TTLs (days) and dedup window of the trace tables."""

    database: str = "tally"
    executions_ttl_days: int = 30
    lines_ttl_days: int = 14
    job_log_ttl_days: int = 30
    dedup_window: int = 100_000
    dedup_window_seconds: int = 7 * 86400
    placement: Placement = SINGLE_SERVER

    def __post_init__(self) -> None:
        if not _NAME.match(self.database):
            raise ValueError(f"bad database name {self.database!r}")
        for days in (self.executions_ttl_days, self.lines_ttl_days, self.job_log_ttl_days):
            if int(days) < 1:
                raise ValueError("TTL days must be >= 1")
        if self.dedup_window < 1:
            raise ValueError("dedup_window must be >= 1 (0 turns off replay dedup)")

    def table(self, name: str) -> str:
        """Qualified table name."""
        return f"{self.database}.{name}"

    def _dedup(self) -> str:
        window = self.placement.dedup_window(self.dedup_window, self.dedup_window_seconds)
        return settings_sql(window)

    def _settings(self) -> str:
        return f"SETTINGS ttl_only_drop_parts = 1, {self._dedup()}"

    def statements(self) -> list[str]:
        """CREATE statements (idempotent)."""
        return [
            f"CREATE DATABASE IF NOT EXISTS {self.database}{self.placement.on_cluster()}",
            self._create(EXECUTIONS, _EXECUTION_COLUMNS, "started", "key, started",
                         self.executions_ttl_days),
            self._create(LINES, _LINE_COLUMNS, "started", "execution_id, seq", self.lines_ttl_days),
            self._create(JOB_LOG, _JOB_LOG_COLUMNS, "at", "job, at", self.job_log_ttl_days),
        ]  # fmt: skip

    def _create(
        self, table: str, columns: tuple[str, ...], time: str, order: str, ttl_days: int
    ) -> str:
        """One table, day-partitioned on ``time`` and dropped whole by its TTL."""
        body = ",\n".join(f"    {column}" for column in columns)
        return f"""CREATE TABLE IF NOT EXISTS {self.table(table)}{self.placement.on_cluster()} (
{body}
) ENGINE = {self.placement.engine("MergeTree")}
PARTITION BY toDate({time})
ORDER BY ({order})
TTL toDateTime({time}) + INTERVAL {int(ttl_days)} DAY
{self._settings()}"""

    def alter_statements(self) -> list[str]:
        """Statements that align existing tables with the settings (dedup window) and add
        the columns added since they were created."""
        c = self.placement.on_cluster()
        settings = [
            f"ALTER TABLE {self.database}.{t}{c} MODIFY SETTING {self._dedup()}"
            for t in (EXECUTIONS, LINES, JOB_LOG)
        ]
        added = ", ".join(f"ADD COLUMN IF NOT EXISTS {column}" for column in EXECUTION_ADDED)
        return [*settings, f"ALTER TABLE {self.database}.{EXECUTIONS}{c} {added}"]
