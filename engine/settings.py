"""What one exactly-once consumer process is configured with (aggregator, trace writer)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from tally.clickhouse.settings import ClickHouseSettings
from tally.kafka.security import KafkaSecurity


@dataclass(frozen=True)
class ConsumerSettings:
    """The engine's settings (``engine.protocols.EngineSettings``), ClickHouse and metrics."""

    bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = "tally.events"
    group: str = "tally-aggregators"
    dead_letter_topic: str = "tally.events.dlq"
    security: KafkaSecurity = field(default_factory=KafkaSecurity)
    clickhouse: ClickHouseSettings = field(default_factory=ClickHouseSettings)
    flush_interval_s: float = 2.0
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
