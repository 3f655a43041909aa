"""Aggregator settings: built once from flags and ``TALLY_*`` environment variables."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tally.kafka_security import KafkaSecurity
from tally.schemas.ddl import DEFAULT_TTL_DAYS, RollupSchema
from tally.schemas.limits import Limits

CLICKHOUSE_URL_FORM = "http(s)://host[:port], e.g. https://ch.example.com:8443"


class BadClickHouseUrl(ValueError):
    """A ClickHouse URL that does not say scheme and host (``ch.example.com:8443``)."""


@dataclass(frozen=True, slots=True)
class ClickHouseEndpoint:
    """Host, port and TLS of a ClickHouse HTTP(S) URL."""

    host: str
    port: int
    secure: bool


def clickhouse_endpoint(url: str) -> ClickHouseEndpoint:
    """The endpoint of ``http(s)://host[:port]``; :class:`BadClickHouseUrl` for anything else.

    Without this a scheme-less ``ch.example.com:8443`` parses as scheme ``ch.example.com`` and no
    host, and clients fall back to plain HTTP on 127.0.0.1:8123 with the remote password."""
    parts = urlsplit(url.strip()) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadClickHouseUrl(f"ClickHouse URL {url!r} is not {CLICKHOUSE_URL_FORM}")
    try:
        port = parts.port
    except ValueError:
        raise BadClickHouseUrl(
            f"ClickHouse URL {url!r} has a bad port: expected {CLICKHOUSE_URL_FORM}"
        ) from None
    secure = parts.scheme == "https"
    return ClickHouseEndpoint(parts.hostname, port or (8443 if secure else 8123), secure)


@dataclass(frozen=True)
class ClickHouseSettings:
    """Where the rollups live. ``url`` is an http(s) URL of clickhouse-server or ours; any
    other URL is refused here (:class:`BadClickHouseUrl`), so no component guesses a host."""

    url: str = "http://127.0.0.1:8123"
    user: str = "default"
    password: str = field(default="", repr=False)
    verify_tls: bool = True
    ca_cert: str | None = None
    insert_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        clickhouse_endpoint(self.url)

    @property
    def endpoint(self) -> ClickHouseEndpoint:
        """Host, port and TLS of ``url``."""
        return clickhouse_endpoint(self.url)


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
    group_flush: bool = False  # one insert per flush for all owned partitions (group intents)
    flush_rows: int = 500_000
    max_poll_records: int = 2_000
    session_timeout_ms: int = 30_000
    heartbeat_interval_ms: int = 3_000
    max_poll_interval_ms: int = 300_000
    metrics_port: int | None = 9464
    metrics_host: str = "127.0.0.1"
    apply_ddl: bool = True
    retry_max_backoff_s: float = 10.0
    max_fold_bytes: int = 512 * 2**20
    max_insert_attempts: int = 5
    initial_offset: str | None = None  # "earliest" | "latest"; None: refuse to guess
    shutdown_grace_s: float = 10.0
    dead_letter_max_bytes: int = 1_000_000
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
    """Flags; each defaults to its ``TALLY_*`` environment variable (shown in ``--help``)."""
    env = os.environ
    p = argparse.ArgumentParser(
        prog="tally-aggregator",
        description="Consume tally events from Kafka, fold them, insert rollups into ClickHouse"
        " exactly once. Secrets come only from TALLY_CLICKHOUSE_PASSWORD and"
        " TALLY_KAFKA_SASL_PASSWORD.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = p.add_argument
    add(
        "--bootstrap",
        default=env.get("TALLY_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
        help="Kafka bootstrap servers (TALLY_KAFKA_BOOTSTRAP)",
    )
    add(
        "--topic",
        default=env.get("TALLY_TOPIC", "tally.events"),
        help="topic of events (TALLY_TOPIC)",
    )
    add(
        "--group",
        default=env.get("TALLY_GROUP", "tally-aggregators"),
        help="consumer group shared by the aggregators (TALLY_GROUP)",
    )
    add(
        "--dead-letter-topic",
        default=env.get("TALLY_DLQ_TOPIC", ""),
        help="topic for rejected records and events; empty means <topic>.dlq (TALLY_DLQ_TOPIC)",
    )
    add(
        "--kafka-security-protocol",
        default=env.get("TALLY_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"),
        help="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (TALLY_KAFKA_SECURITY_PROTOCOL)",
    )
    add(
        "--kafka-sasl-mechanism",
        default=env.get("TALLY_KAFKA_SASL_MECHANISM", "PLAIN"),
        help="SASL mechanism (TALLY_KAFKA_SASL_MECHANISM)",
    )
    add(
        "--kafka-sasl-username",
        default=env.get("TALLY_KAFKA_SASL_USERNAME"),
        help="SASL user; the password only from TALLY_KAFKA_SASL_PASSWORD"
        " (TALLY_KAFKA_SASL_USERNAME)",
    )
    add(
        "--kafka-ssl-cafile",
        default=env.get("TALLY_KAFKA_SSL_CAFILE"),
        help="CA bundle for Kafka TLS (TALLY_KAFKA_SSL_CAFILE)",
    )
    add(
        "--clickhouse-url",
        default=env.get("TALLY_CLICKHOUSE_URL", "http://127.0.0.1:8123"),
        help="ClickHouse HTTP(S) URL (TALLY_CLICKHOUSE_URL)",
    )
    add(
        "--clickhouse-user",
        default=env.get("TALLY_CLICKHOUSE_USER", "default"),
        help="ClickHouse user; the password only from TALLY_CLICKHOUSE_PASSWORD"
        " (TALLY_CLICKHOUSE_USER)",
    )
    add(
        "--clickhouse-ca-cert",
        default=env.get("TALLY_CLICKHOUSE_CA_CERT"),
        help="CA bundle for ClickHouse HTTPS (TALLY_CLICKHOUSE_CA_CERT)",
    )
    add(
        "--database",
        default=env.get("TALLY_DATABASE", "tally"),
        help="ClickHouse database of the rollups (TALLY_DATABASE)",
    )
    add(
        "--granularities",
        default=env.get("TALLY_GRANULARITIES", "1m,1h,1d"),
        help="stored granularities, comma-separated (TALLY_GRANULARITIES)",
    )
    add(
        "--ttl-days",
        default=env.get("TALLY_TTL_DAYS", ""),
        help="retention per granularity, e.g. 1m=14,1h=400,1d=3650; empty keeps those"
        " defaults (TALLY_TTL_DAYS)",
    )
    add(
        "--time-zone",
        default=env.get("TALLY_TIME_ZONE", "UTC"),
        help="zone of hour/day/week/month buckets (TALLY_TIME_ZONE)",
    )
    add(
        "--week-start",
        default=env.get("TALLY_WEEK_START", "monday"),
        help="first day of a week bucket (TALLY_WEEK_START)",
    )
    add(
        "--table-engine",
        default=env.get("TALLY_TABLE_ENGINE", "AggregatingMergeTree"),
        help="engine of the rollups table (TALLY_TABLE_ENGINE)",
    )
    add(
        "--dedup-window",
        type=_positive_int,
        default=env.get("TALLY_DEDUP_WINDOW", "100000"),
        help="flushes a replay may lag behind and still be deduplicated; applied on every"
        " start, 0 is refused (TALLY_DEDUP_WINDOW)",
    )
    add(
        "--dedup-window-seconds",
        type=_positive_int,
        default=env.get("TALLY_DEDUP_WINDOW_SECONDS", "604800"),
        help="replicated engines: seconds a replay may lag behind (TALLY_DEDUP_WINDOW_SECONDS)",
    )
    add(
        "--flush-interval",
        type=float,
        default=float(env.get("TALLY_FLUSH_INTERVAL_S", "2")),
        help="seconds between flushes (TALLY_FLUSH_INTERVAL_S)",
    )
    add(
        "--group-flush",
        action=argparse.BooleanOptionalAction,
        default=env.get("TALLY_GROUP_FLUSH", "0").lower() in ("1", "true", "yes", "on"),
        help="one insert per flush for all owned partitions instead of one per partition:"
        " fewer ClickHouse parts (TALLY_GROUP_FLUSH)",
    )
    add(
        "--flush-rows",
        type=int,
        default=int(env.get("TALLY_FLUSH_ROWS", "500000")),
        help="flush early when the folds hold this many entries (TALLY_FLUSH_ROWS)",
    )
    add(
        "--max-fold-mb",
        type=float,
        default=float(env.get("TALLY_MAX_FOLD_MB", "512")),
        help="flush early when the folds and unacknowledged dead letters hold this many MiB"
        " (TALLY_MAX_FOLD_MB)",
    )
    add(
        "--max-insert-attempts",
        type=int,
        default=int(env.get("TALLY_MAX_INSERT_ATTEMPTS", "5")),
        help="times ClickHouse may reject an insert for its content before the range is"
        " isolated and its refused records dead-lettered as insert_rejected"
        " (TALLY_MAX_INSERT_ATTEMPTS)",
    )
    add(
        "--initial-offset",
        choices=("earliest", "latest"),
        default=env.get("TALLY_INITIAL_OFFSET") or None,
        help="where a group without committed offsets starts; unset, the aggregator refuses"
        " to start on such a group while the topic holds records (TALLY_INITIAL_OFFSET)",
    )
    add(
        "--session-timeout-ms",
        type=int,
        default=int(env.get("TALLY_SESSION_TIMEOUT_MS", "30000")),
        help="consumer group session timeout (TALLY_SESSION_TIMEOUT_MS)",
    )
    add(
        "--heartbeat-ms",
        type=int,
        default=int(env.get("TALLY_HEARTBEAT_MS", "3000")),
        help="consumer heartbeat interval (TALLY_HEARTBEAT_MS)",
    )
    add(
        "--shutdown-grace",
        type=float,
        default=float(env.get("TALLY_SHUTDOWN_GRACE_S", "10")),
        help="seconds a SIGTERM waits for failing inserts or commits before exiting; what is"
        " not committed is replayed by the next owner (TALLY_SHUTDOWN_GRACE_S)",
    )
    add(
        "--metrics-host",
        default=env.get("TALLY_METRICS_HOST", "127.0.0.1"),
        help="address of /metrics; 0.0.0.0 in a container (TALLY_METRICS_HOST)",
    )
    add(
        "--metrics-port",
        type=int,
        default=int(env.get("TALLY_METRICS_PORT", "9464")),
        help="port of /metrics; 0 picks a free port (logged), -1 disables (TALLY_METRICS_PORT)",
    )
    add(
        "--max-event-age-s",
        type=int,
        default=int(env.get("TALLY_MAX_EVENT_AGE_S", "604800")),
        help="oldest event accepted, relative to its Kafka record time (TALLY_MAX_EVENT_AGE_S)",
    )
    add("--no-ddl", action="store_true", help="do not apply the DDL at start")
    return p


def from_args(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> AggregatorSettings:
    """Build settings from flags; secrets come only from the environment."""
    env = os.environ if env is None else env
    p = parser()
    a = p.parse_args(argv)
    try:
        clickhouse_endpoint(a.clickhouse_url)
    except BadClickHouseUrl as exc:
        p.exit(2, f"{p.prog}: error: --clickhouse-url: {exc}\n")
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
        group_flush=a.group_flush,
        flush_rows=a.flush_rows,
        session_timeout_ms=a.session_timeout_ms,
        heartbeat_interval_ms=a.heartbeat_ms,
        metrics_port=a.metrics_port if a.metrics_port >= 0 else None,
        metrics_host=a.metrics_host,
        apply_ddl=not a.no_ddl,
        max_fold_bytes=int(a.max_fold_mb * 2**20),
        max_insert_attempts=max(1, a.max_insert_attempts),
        initial_offset=a.initial_offset,
        shutdown_grace_s=a.shutdown_grace,
    )
