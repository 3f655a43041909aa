"""``python -m tally.traces [run|check]``: the trace writer process.

``run`` (default) consumes until SIGTERM/SIGINT, then flushes, commits and exits 0; ``check``
reaches ClickHouse (applying the DDL) and Kafka. Flags default to ``TALLY_*`` variables;
secrets (ClickHouse and SASL passwords) come only from the environment.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence

from tally.clickhouse.settings import ClickHouseSettings
from tally.engine import logs
from tally.engine.metrics import EngineMetrics
from tally.engine.settings import ConsumerSettings
from tally.kafka.admin import count_partitions
from tally.kafka.security import KafkaSecurity
from tally.traces.ddl import TraceSchema
from tally.traces.sink import TraceSink
from tally.traces.transport import TOPIC
from tally.traces.writer import build_trace_writer

log = logging.getLogger("tally.traces")


def parser() -> argparse.ArgumentParser:
    """Flags; each defaults to its ``TALLY_*`` environment variable."""
    env = os.environ
    p = argparse.ArgumentParser(prog="tally-trace-writer", description=__doc__)
    add = p.add_argument
    add("--bootstrap", default=env.get("TALLY_KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    add("--topic", default=env.get("TALLY_TRACE_TOPIC", TOPIC))
    add("--group", default=env.get("TALLY_TRACE_GROUP", "tally-trace-writers"))
    add("--clickhouse-url", default=env.get("TALLY_CLICKHOUSE_URL", "http://127.0.0.1:8123"))
    add("--clickhouse-user", default=env.get("TALLY_CLICKHOUSE_USER", "default"))
    add("--clickhouse-ca-cert", default=env.get("TALLY_CLICKHOUSE_CA_CERT"))
    add("--database", default=env.get("TALLY_DATABASE", "tally"))
    add("--executions-ttl-days", type=int, default=int(env.get("TALLY_TRACE_TTL_DAYS", "30")))
    add("--lines-ttl-days", type=int, default=int(env.get("TALLY_TRACE_LINES_TTL_DAYS", "14")))
    add("--job-log-ttl-days", type=int, default=int(env.get("TALLY_JOB_LOG_TTL_DAYS", "30")))
    add("--dedup-window", type=int, default=int(env.get("TALLY_DEDUP_WINDOW", "100000")))
    add("--flush-interval", type=float, default=float(env.get("TALLY_FLUSH_INTERVAL_S", "2")))
    add("--flush-rows", type=int, default=int(env.get("TALLY_TRACE_FLUSH_ROWS", "200000")))
    add("--session-timeout-ms", type=int, default=int(env.get("TALLY_SESSION_TIMEOUT_MS", "30000")))
    add("--heartbeat-ms", type=int, default=int(env.get("TALLY_HEARTBEAT_MS", "3000")))
    add("--metrics-port", type=int, default=int(env.get("TALLY_TRACE_METRICS_PORT", "0")))
    add(
        "--initial-offset",
        choices=["earliest", "latest"],
        default=env.get("TALLY_TRACE_INITIAL_OFFSET", "earliest"),
        help="where a new writer group starts (earliest: every trace already on the topic)",
    )
    add("--no-ddl", action="store_true", help="do not apply the DDL at start")
    return p


def from_args(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> tuple[ConsumerSettings, TraceSchema]:
    """The writer's loop settings and the trace schema."""
    env = os.environ if env is None else env
    a = parser().parse_args(argv)
    security = KafkaSecurity(
        protocol=env.get("TALLY_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"),
        sasl_mechanism=env.get("TALLY_KAFKA_SASL_MECHANISM", "PLAIN"),
        sasl_username=env.get("TALLY_KAFKA_SASL_USERNAME"),
        sasl_password=env.get("TALLY_KAFKA_SASL_PASSWORD"),
        ssl_cafile=env.get("TALLY_KAFKA_SSL_CAFILE"),
    )
    settings = ConsumerSettings(
        bootstrap_servers=a.bootstrap,
        topic=a.topic,
        group=a.group,
        dead_letter_topic=f"{a.topic}.dlq",
        security=security,
        clickhouse=ClickHouseSettings(
            url=a.clickhouse_url,
            user=a.clickhouse_user,
            password=env.get("TALLY_CLICKHOUSE_PASSWORD", ""),
            ca_cert=a.clickhouse_ca_cert,
        ),
        flush_interval_s=a.flush_interval,
        flush_rows=a.flush_rows,
        session_timeout_ms=a.session_timeout_ms,
        heartbeat_interval_ms=a.heartbeat_ms,
        metrics_port=a.metrics_port or None,
        apply_ddl=not a.no_ddl,
        initial_offset=a.initial_offset,
        client_id=f"tally-trace-writer-{os.getpid()}",
    )
    schema = TraceSchema(
        database=a.database,
        executions_ttl_days=a.executions_ttl_days,
        lines_ttl_days=a.lines_ttl_days,
        job_log_ttl_days=a.job_log_ttl_days,
        dedup_window=a.dedup_window,
    )
    return settings, schema


async def serve(settings: ConsumerSettings, schema: TraceSchema) -> None:
    """Run until SIGTERM/SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    metrics = EngineMetrics()
    if settings.metrics_port is not None:
        metrics.serve(settings.metrics_port, host="127.0.0.1")
    log.info("trace writer starting", extra={"topic": settings.topic, "group": settings.group})
    await build_trace_writer(settings, schema, metrics).run(stop)
    log.info("trace writer stopped cleanly")


async def check(settings: ConsumerSettings, schema: TraceSchema) -> None:
    """Reach ClickHouse (apply the DDL) and list the topic's partitions."""
    sink = TraceSink(settings.clickhouse, schema)
    await sink.start()
    try:
        await sink.apply_ddl()
    finally:
        await sink.close()
    count = await count_partitions(settings.bootstrap_servers, settings.topic, settings.security)
    print(f"ok: ClickHouse {settings.clickhouse.url}, topic {settings.topic}: {count} partitions")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = "run"
    if args and args[0] in ("run", "check"):
        command = args.pop(0)
    settings, schema = from_args(args)
    logs.configure()
    runner = serve if command == "run" else check
    asyncio.run(runner(settings, schema))
