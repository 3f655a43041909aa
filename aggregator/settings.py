"""Aggregator settings: built once from flags and ``TALLY_*`` environment variables."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tally.kafka_security import KafkaSecurity
from tally.schemas.ddl import DEFAULT_TTL_DAYS, RollupSchema
from tally.schemas.limits import Limits


@dataclass(frozen=True)
class ClickHouseSettings:
    """Where the rollups live. ``url`` is an http(s) URL of clickhouse-server or ours."""

    url: str = "http://127.0.0.1:8123"
    user: str = "default"
    password: str = field(default="", repr=False)
    verify_tls: bool = True
    ca_cert: str | None = None
    insert_timeout_s: float = 120.0


@dataclass(frozen=True)
class AggregatorSettings:
    """One aggregator process."""

    bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = "tally.events"
    group: str = "tally-aggregators"
    dead_letter_topic: str = "tally.events.dlq"
    security: KafkaSecurity = field(default_factory=KafkaSecurity)
    clickhouse: ClickHouseSettings = field(default_factory=ClickHouseSettings)
    schema: RollupSchema = field(default_factory=RollupSchema)
    limits: Limits = field(default_factory=Limits)
    flush_interval_s: float = 2.0
    flush_rows: int = 500_000
    max_poll_records: int = 2_000
    session_timeout_ms: int = 30_000
    heartbeat_interval_ms: int = 3_000
    max_poll_interval_ms: int = 300_000
    metrics_port: int | None = 9464
    apply_ddl: bool = True
    retry_max_backoff_s: float = 10.0
    client_id: str = field(default_factory=lambda: f"tally-aggregator-{os.getpid()}")

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


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a dedup window of 0 would turn dedup off)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"must be >= 1, not {value}: 0 turns off the dedup that exactly-once replays need"
        )
    return value


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _ttls(text: str) -> dict[str, int]:
    """Parse ``1m=14,1h=400`` into a dict of days."""
    out = dict(DEFAULT_TTL_DAYS)
    for item in _split(text):
        g, _, days = item.partition("=")
        out[g.strip()] = int(days)
    return out


def parser() -> argparse.ArgumentParser:
    """Flags; each defaults to its ``TALLY_*`` environment variable."""
    env = os.environ
    p = argparse.ArgumentParser(prog="tally-aggregator", description=__doc__)
    add = p.add_argument
    add("--bootstrap", default=env.get("TALLY_KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    add("--topic", default=env.get("TALLY_TOPIC", "tally.events"))
    add("--group", default=env.get("TALLY_GROUP", "tally-aggregators"))
    add("--dead-letter-topic", default=env.get("TALLY_DLQ_TOPIC", ""))
    add("--kafka-security-protocol", default=env.get("TALLY_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"))
    add("--kafka-sasl-mechanism", default=env.get("TALLY_KAFKA_SASL_MECHANISM", "PLAIN"))
    add("--kafka-sasl-username", default=env.get("TALLY_KAFKA_SASL_USERNAME"))
    add("--kafka-ssl-cafile", default=env.get("TALLY_KAFKA_SSL_CAFILE"))
    add("--clickhouse-url", default=env.get("TALLY_CLICKHOUSE_URL", "http://127.0.0.1:8123"))
    add("--clickhouse-user", default=env.get("TALLY_CLICKHOUSE_USER", "default"))
    add("--clickhouse-ca-cert", default=env.get("TALLY_CLICKHOUSE_CA_CERT"))
    add("--database", default=env.get("TALLY_DATABASE", "tally"))
    add("--granularities", default=env.get("TALLY_GRANULARITIES", "1m,1h,1d"))
    add("--ttl-days", default=env.get("TALLY_TTL_DAYS", ""), help="e.g. 1m=14,1h=400,1d=3650")
    add("--time-zone", default=env.get("TALLY_TIME_ZONE", "UTC"))
    add("--week-start", default=env.get("TALLY_WEEK_START", "monday"))
    add("--table-engine", default=env.get("TALLY_TABLE_ENGINE", "AggregatingMergeTree"))
    add(
        "--dedup-window",
        type=_positive_int,
        default=env.get("TALLY_DEDUP_WINDOW", "100000"),
        help="flushes a replay may lag behind and still be deduplicated (applied on start)",
    )
    add(
        "--dedup-window-seconds",
        type=_positive_int,
        default=env.get("TALLY_DEDUP_WINDOW_SECONDS", "604800"),
        help="replicated engines: seconds a replay may lag behind (default 7 days)",
    )
    add("--flush-interval", type=float, default=float(env.get("TALLY_FLUSH_INTERVAL_S", "2")))
    add("--flush-rows", type=int, default=int(env.get("TALLY_FLUSH_ROWS", "500000")))
    add("--session-timeout-ms", type=int, default=int(env.get("TALLY_SESSION_TIMEOUT_MS", "30000")))
    add("--heartbeat-ms", type=int, default=int(env.get("TALLY_HEARTBEAT_MS", "3000")))
    add("--metrics-port", type=int, default=int(env.get("TALLY_METRICS_PORT", "9464")))
    add("--max-event-age-s", type=int, default=int(env.get("TALLY_MAX_EVENT_AGE_S", "604800")))
    add("--no-ddl", action="store_true", help="do not apply the DDL at start")
    return p


def from_args(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> AggregatorSettings:
    """Build settings from flags; secrets come only from the environment."""
    env = os.environ if env is None else env
    a = parser().parse_args(argv)
    security = KafkaSecurity(
        protocol=a.kafka_security_protocol,
        sasl_mechanism=a.kafka_sasl_mechanism,
        sasl_username=a.kafka_sasl_username,
        sasl_password=env.get("TALLY_KAFKA_SASL_PASSWORD"),
        ssl_cafile=a.kafka_ssl_cafile,
    )
    clickhouse = ClickHouseSettings(
        url=a.clickhouse_url,
        user=a.clickhouse_user,
        password=env.get("TALLY_CLICKHOUSE_PASSWORD", ""),
        ca_cert=a.clickhouse_ca_cert,
    )
    schema = RollupSchema(
        database=a.database,
        stored=tuple(_split(a.granularities)),
        ttl_days=_ttls(a.ttl_days),
        time_zone=a.time_zone,
        week_start=a.week_start,
        engine=a.table_engine,
        dedup_window=a.dedup_window,
        dedup_window_seconds=a.dedup_window_seconds,
    )
    ttl_seconds = tuple((g, int(schema.ttl_days.get(g, 3650)) * 86400) for g in schema.stored)
    return AggregatorSettings(
        bootstrap_servers=a.bootstrap,
        topic=a.topic,
        group=a.group,
        dead_letter_topic=a.dead_letter_topic or f"{a.topic}.dlq",
        security=security,
        clickhouse=clickhouse,
        schema=schema,
        limits=Limits(max_past_seconds=a.max_event_age_s, ttl_seconds=ttl_seconds),
        flush_interval_s=a.flush_interval,
        flush_rows=a.flush_rows,
        session_timeout_ms=a.session_timeout_ms,
        heartbeat_interval_ms=a.heartbeat_ms,
        metrics_port=a.metrics_port or None,
        apply_ddl=not a.no_ddl,
    )
