"""Aggregator settings: built once from flags and ``TALLY_*`` environment variables."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tally.clickhouse.settings import (
    CONNECTION,
    DATABASE,
    DEDUP_WINDOW,
    clickhouse_from,
    dedup_window,
)
from tally.engine.settings import CONSUMER, PACING, PROCESS, ConsumerSettings
from tally.kafka.settings import BOOTSTRAP, SECURITY, TOPIC, dead_letter_topic, security_from
from tally.schemas.ddl import DEFAULT_TTL_DAYS, RollupSchema
from tally.schemas.limits import Limits
from tally.schemas.settings_cli import parse
from tally.schemas.settings_table import (
    Setting,
    SettingsTable,
    switch,
    text,
)


@dataclass(frozen=True)
class AggregatorSettings(ConsumerSettings):
    """One aggregator process: the engine's settings plus the rollup schema and limits."""

    schema: RollupSchema = field(default_factory=RollupSchema)
    limits: Limits = field(default_factory=Limits)

    def startup_warnings(self) -> list[str]:
        """Configuration that silently loses data somewhere; logged at start."""
        out = []
        shortest = self.limits.shortest_ttl()
        if shortest is not None and self.limits.max_past_seconds > shortest[1]:
            g, ttl = shortest
            out.append(
                f"--max-event-age-s {self.limits.max_past_seconds} exceeds the {g} TTL"
                f" ({ttl // 86400} days): events older than that are accepted but vanish from"
                f" {g} (counted in tally_expired_on_arrival{{granularity}})"
            )
        return out


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _ttls(value: str) -> dict[str, int]:
    """Parse ``1m=14,1h=400`` into a dict of days."""
    out = dict(DEFAULT_TTL_DAYS)
    for item in _split(value):
        g, _, days = item.partition("=")
        out[g.strip()] = int(days)
    return out


_SCHEMA = RollupSchema()
ROLLUPS = SettingsTable(
    (
        Setting(
            "granularities", text, ",".join(_SCHEMA.stored), "--granularities",
            "TALLY_GRANULARITIES", "stored granularities, comma-separated",
        ),
        Setting(
            "ttl_days", text, "", "--ttl-days", "TALLY_TTL_DAYS",
            "retention per granularity, e.g. 1m=14,1h=400,1d=3650; empty keeps those defaults",
        ),
        Setting(
            "time_zone", text, _SCHEMA.time_zone, "--time-zone", "TALLY_TIME_ZONE",
            "zone of hour/day/week/month buckets",
        ),
        Setting(
            "week_start", text, _SCHEMA.week_start, "--week-start", "TALLY_WEEK_START",
            "first day of a week bucket",
        ),
        Setting(
            "table_engine", text, _SCHEMA.engine, "--table-engine", "TALLY_TABLE_ENGINE",
            "engine of the rollups table",
        ),
        DEDUP_WINDOW,
        Setting(
            "dedup_window_seconds", dedup_window, _SCHEMA.dedup_window_seconds,
            "--dedup-window-seconds", "TALLY_DEDUP_WINDOW_SECONDS",
            "replicated engines: seconds a replay may lag behind",
        ),
        Setting(
            "max_event_age_s", int, Limits().max_past_seconds, "--max-event-age-s",
            "TALLY_MAX_EVENT_AGE_S", "oldest event accepted, relative to its Kafka record time",
        ),
        Setting(
            "group_flush", switch, False, "--group-flush", "TALLY_GROUP_FLUSH",
            "EXPERIMENTAL, off by default: one insert per flush for all owned partitions (fewer"
            " ClickHouse parts); one overloaded load run was not exact (README: combined flushes)",
        ),
    )
)  # fmt: skip
# Every setting of one aggregator process, in ``--help`` order.
SETTINGS = (
    SettingsTable((BOOTSTRAP, TOPIC))
    + CONSUMER
    + PACING
    + SECURITY
    + CONNECTION
    + SettingsTable((DATABASE,))
    + ROLLUPS
    + PROCESS
)
DESCRIPTION = (
    "Consume tally events from Kafka, fold them, insert rollups into ClickHouse exactly once."
    " Secrets come only from TALLY_CLICKHOUSE_PASSWORD and TALLY_KAFKA_SASL_PASSWORD."
)


def from_values(values: Mapping[str, Any]) -> AggregatorSettings:
    """Settings from resolved ``SETTINGS`` values."""
    clickhouse = clickhouse_from(values)
    schema = RollupSchema(
        database=values["database"],
        stored=tuple(_split(values["granularities"])),
        ttl_days=_ttls(values["ttl_days"]),
        time_zone=values["time_zone"],
        week_start=values["week_start"],
        engine=values["table_engine"],
        dedup_window=values["dedup_window"],
        dedup_window_seconds=values["dedup_window_seconds"],
        placement=clickhouse.placement,
    )
    ttl_seconds = tuple((g, int(schema.ttl_days.get(g, 3650)) * 86400) for g in schema.stored)
    return AggregatorSettings(
        bootstrap_servers=values["bootstrap"],
        topic=values["topic"],
        group=values["group"],
        dead_letter_topic=values["dead_letter_topic"] or dead_letter_topic(values["topic"]),
        security=security_from(values),
        clickhouse=clickhouse,
        schema=schema,
        limits=Limits(max_past_seconds=values["max_event_age_s"], ttl_seconds=ttl_seconds),
        flush_interval_s=values["flush_interval"],
        max_inserts_per_s=max(0.0, values["max_inserts_per_s"]),
        max_flush_interval_s=values["max_flush_interval"],
        parts_check_interval_s=max(0.0, values["parts_check_interval"]),
        group_flush=values["group_flush"],
        flush_rows=values["flush_rows"],
        session_timeout_ms=values["session_timeout_ms"],
        heartbeat_interval_ms=values["heartbeat_ms"],
        metrics_port=values["metrics_port"] if values["metrics_port"] >= 0 else None,
        metrics_host=values["metrics_host"],
        apply_ddl=not values["no_ddl"],
        max_fold_bytes=int(values["max_fold_mb"] * 2**20),
        max_insert_attempts=max(1, values["max_insert_attempts"]),
        initial_offset=values["initial_offset"],
        shutdown_grace_s=values["shutdown_grace"],
    )


def from_args(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> AggregatorSettings:
    """Build settings from flags, else ``TALLY_*`` variables, else defaults; secrets come
    only from the environment. Bad values exit 2 with one usage error."""
    env = os.environ if env is None else env
    args = sys.argv[1:] if argv is None else argv
    return parse(SETTINGS, args, "tally-aggregator", env, from_values)


def command_line(**values: Any) -> list[str]:
    """``python -m tally.aggregator run`` with flags for ``values`` (fields of ``SETTINGS``);
    the ClickHouse password goes in the child's environment (``TALLY_CLICKHOUSE_PASSWORD``)."""
    return [sys.executable, "-m", "tally.aggregator", "run", *SETTINGS.argv(values)]
