"""What one exactly-once consumer process is configured with (aggregator, trace writer)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from tally.clickhouse.settings import ClickHouseSettings
from tally.kafka.security import KafkaSecurity
from tally.kafka.settings import AGGREGATOR_GROUP, DEFAULT_BOOTSTRAP, EVENTS_TOPIC
from tally.kafka.settings import dead_letter_topic as dlq_of
from tally.schemas.settings_table import Setting, SettingsTable, optional_text, switch, text

# The engine's settings as flags and ``TALLY_*`` variables, with the aggregator's defaults; the
# trace writer changes a few rows (``SettingsTable.with_changes``).
CONSUMER = SettingsTable(
    (
        Setting(
            "group", text, AGGREGATOR_GROUP, "--group", "TALLY_GROUP",
            "consumer group shared by the aggregators",
        ),
        Setting(
            "dead_letter_topic", text, "", "--dead-letter-topic", "TALLY_DLQ_TOPIC",
            "topic for rejected records and events; empty means <topic>.dlq",
        ),
        Setting(
            "flush_interval", float, 2.0, "--flush-interval", "TALLY_FLUSH_INTERVAL_S",
            "seconds between flushes",
        ),
        Setting(
            "flush_rows", int, 500_000, "--flush-rows", "TALLY_FLUSH_ROWS",
            "flush early when the folds hold this many entries",
        ),
        Setting(
            "max_fold_mb", float, 512.0, "--max-fold-mb", "TALLY_MAX_FOLD_MB",
            "flush early when the folds and unacknowledged dead letters hold this many MiB",
        ),
        Setting(
            "max_insert_attempts", int, 5, "--max-insert-attempts", "TALLY_MAX_INSERT_ATTEMPTS",
            "times ClickHouse may reject an insert for its content before the range is"
            " isolated and its refused records dead-lettered as insert_rejected",
        ),
        Setting(
            "initial_offset", optional_text, None, "--initial-offset", "TALLY_INITIAL_OFFSET",
            "where a group without committed offsets starts; unset, the aggregator refuses"
            " to start on such a group while the topic holds records",
            choices=("earliest", "latest"),
        ),
        Setting(
            "session_timeout_ms", int, 30_000, "--session-timeout-ms", "TALLY_SESSION_TIMEOUT_MS",
            "consumer group session timeout",
        ),
        Setting(
            "heartbeat_ms", int, 3_000, "--heartbeat-ms", "TALLY_HEARTBEAT_MS",
            "consumer heartbeat interval",
        ),
        Setting(
            "shutdown_grace", float, 10.0, "--shutdown-grace", "TALLY_SHUTDOWN_GRACE_S",
            "seconds a SIGTERM waits for failing inserts or commits before exiting; what is"
            " not committed is replayed by the next owner",
        ),
    )
)  # fmt: skip
# When a flush happens: the insert ceiling and parts pressure stretch ``flush_interval``
# (``engine/pacing.py``); the aggregator has these, the trace writer keeps their defaults.
PACING = SettingsTable(
    (
        Setting(
            "max_inserts_per_s", float, 2.0, "--max-inserts-per-s", "TALLY_MAX_INSERTS_PER_S",
            "ceiling on this process's partition flushes per second (one insert each, plus"
            " key-index inserts for new keys): the flush interval stretches to stay under it and"
            " partitions flush staggered; 0 means no ceiling (docs/capacity.md)",
        ),
        Setting(
            "max_flush_interval", float, 30.0, "--max-flush-interval",
            "TALLY_MAX_FLUSH_INTERVAL_S",
            "longest the flush interval stretches (insert ceiling, parts pressure);"
            " --flush-rows and --max-fold-mb still flush earlier",
        ),
        Setting(
            "parts_check_interval", float, 10.0, "--parts-check-interval",
            "TALLY_PARTS_CHECK_INTERVAL_S",
            "seconds between reads of the written tables' active parts and merges"
            " (system.parts, system.merges); the interval stretches as the fullest partition"
            " nears parts_to_delay_insert; 0 disables",
        ),
    )
)  # fmt: skip
# How the process serves its metrics and whether it applies the DDL.
PROCESS = SettingsTable(
    (
        Setting(
            "metrics_host", text, "127.0.0.1", "--metrics-host", "TALLY_METRICS_HOST",
            "address of /metrics; 0.0.0.0 in a container",
        ),
        Setting(
            "metrics_port", int, 9464, "--metrics-port", "TALLY_METRICS_PORT",
            "port of /metrics; 0 picks a free port (logged), -1 disables",
        ),
        Setting("no_ddl", switch, False, "--no-ddl", None, "do not apply the DDL at start"),
    )
)  # fmt: skip


@dataclass(frozen=True)
class ConsumerSettings:
    """The engine's settings (``engine.protocols.EngineSettings``), ClickHouse and metrics."""

    bootstrap_servers: str = DEFAULT_BOOTSTRAP
    topic: str = EVENTS_TOPIC
    group: str = AGGREGATOR_GROUP
    dead_letter_topic: str = dlq_of(EVENTS_TOPIC)
    security: KafkaSecurity = field(default_factory=KafkaSecurity)
    clickhouse: ClickHouseSettings = field(default_factory=ClickHouseSettings)
    flush_interval_s: float = CONSUMER["flush_interval"].default
    max_inserts_per_s: float = PACING["max_inserts_per_s"].default
    max_flush_interval_s: float = PACING["max_flush_interval"].default
    parts_check_interval_s: float = PACING["parts_check_interval"].default
    group_flush: bool = False  # one insert per flush for all owned partitions (group intents)
    flush_rows: int = CONSUMER["flush_rows"].default
    max_poll_records: int = 2_000
    session_timeout_ms: int = CONSUMER["session_timeout_ms"].default
    heartbeat_interval_ms: int = CONSUMER["heartbeat_ms"].default
    max_poll_interval_ms: int = 300_000
    metrics_port: int | None = PROCESS["metrics_port"].default
    metrics_host: str = PROCESS["metrics_host"].default
    apply_ddl: bool = True
    retry_max_backoff_s: float = 10.0
    max_fold_bytes: int = int(CONSUMER["max_fold_mb"].default * 2**20)
    max_insert_attempts: int = CONSUMER["max_insert_attempts"].default
    initial_offset: str | None = None  # "earliest" | "latest"; None: refuse to guess
    shutdown_grace_s: float = CONSUMER["shutdown_grace"].default
    dead_letter_max_bytes: int = 1_000_000
    client_id: str = field(default_factory=lambda: f"tally-aggregator-{os.getpid()}")
