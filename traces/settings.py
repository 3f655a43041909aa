"""The trace writer's settings, declared once: the shared Kafka, ClickHouse and consumer rows
with the writer's own variables and defaults, and the trace tables' retention."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from tally.clickhouse.settings import CONNECTION, DATABASE, DEDUP_WINDOW, clickhouse_from
from tally.engine.settings import CONSUMER, PROCESS, ConsumerSettings
from tally.kafka.settings import (
    BOOTSTRAP,
    SECURITY,
    TOPIC,
    TRACES_TOPIC,
    dead_letter_topic,
    security_from,
)
from tally.schemas.settings_table import Setting, SettingsTable
from tally.traces.ddl import TraceSchema

WRITER_GROUP = "tally-trace-writers"
_SCHEMA = TraceSchema()
RETENTION = SettingsTable(
    (
        Setting(
            "executions_ttl_days", int, _SCHEMA.executions_ttl_days, "--executions-ttl-days",
            "TALLY_TRACE_TTL_DAYS", "days executions are kept",
        ),
        Setting(
            "lines_ttl_days", int, _SCHEMA.lines_ttl_days, "--lines-ttl-days",
            "TALLY_TRACE_LINES_TTL_DAYS", "days trace lines are kept",
        ),
        Setting(
            "job_log_ttl_days", int, _SCHEMA.job_log_ttl_days, "--job-log-ttl-days",
            "TALLY_JOB_LOG_TTL_DAYS", "days the job log is kept",
        ),
    )
)  # fmt: skip
# The aggregator's rows under the writer's own variables where the two must differ (a shared
# environment, as in compose, must not send traces to the events topic or group).
SETTINGS = (
    SettingsTable((BOOTSTRAP, TOPIC))
    .with_changes("topic", default=TRACES_TOPIC, env="TALLY_TRACE_TOPIC", help="topic of traces")
    + CONSUMER.without("dead_letter_topic", "max_fold_mb", "max_insert_attempts", "shutdown_grace")
    .with_changes("group", default=WRITER_GROUP, env="TALLY_TRACE_GROUP",
                  help="consumer group shared by the trace writers")
    .with_changes("flush_rows", default=200_000, env="TALLY_TRACE_FLUSH_ROWS")
    .with_changes("initial_offset", default="earliest", env="TALLY_TRACE_INITIAL_OFFSET",
                  help="where a new writer group starts (earliest: every trace already on"
                  " the topic)")
    + SECURITY
    + CONNECTION
    + SettingsTable((DATABASE, DEDUP_WINDOW))
    + RETENTION
    + PROCESS.without("metrics_host")
    .with_changes("metrics_port", default=0, env="TALLY_TRACE_METRICS_PORT",
                  help="port of /metrics on 127.0.0.1; 0 disables")
)  # fmt: skip


def from_values(values: Mapping[str, Any]) -> tuple[ConsumerSettings, TraceSchema]:
    """The writer's loop settings and the trace schema from resolved ``SETTINGS`` values."""
    settings = ConsumerSettings(
        bootstrap_servers=values["bootstrap"],
        topic=values["topic"],
        group=values["group"],
        dead_letter_topic=dead_letter_topic(values["topic"]),
        security=security_from(values),
        clickhouse=clickhouse_from(values),
        flush_interval_s=values["flush_interval"],
        flush_rows=values["flush_rows"],
        session_timeout_ms=values["session_timeout_ms"],
        heartbeat_interval_ms=values["heartbeat_ms"],
        metrics_port=values["metrics_port"] or None,
        apply_ddl=not values["no_ddl"],
        initial_offset=values["initial_offset"],
        client_id=f"tally-trace-writer-{os.getpid()}",
    )
    schema = TraceSchema(
        database=values["database"],
        executions_ttl_days=values["executions_ttl_days"],
        lines_ttl_days=values["lines_ttl_days"],
        job_log_ttl_days=values["job_log_ttl_days"],
        dedup_window=values["dedup_window"],
        placement=settings.clickhouse.placement,
    )
    return settings, schema


def command_line(**values: Any) -> list[str]:
    """``python -m tally.traces run`` with flags for ``values`` (fields of ``SETTINGS``); the
    ClickHouse password goes in the child's environment (``TALLY_CLICKHOUSE_PASSWORD``)."""
    return [sys.executable, "-m", "tally.traces", "run", *SETTINGS.argv(values)]
