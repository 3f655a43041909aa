"""``python -m tally.traces [run|check]``: the trace writer process.

``run`` (default) consumes until SIGTERM/SIGINT, then flushes, commits and exits 0; ``check``
reaches ClickHouse (applying the DDL) and Kafka. Flags default to ``TALLY_*`` variables;
secrets (ClickHouse and SASL passwords) come only from the environment.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from tally.engine import logs
from tally.engine.metrics import EngineMetrics
from tally.engine.settings import ConsumerSettings
from tally.kafka.admin import count_partitions
from tally.schemas import settings_cli
from tally.schemas.settings_cli import build_or_usage_error, parse, service_app
from tally.traces.ddl import TraceSchema
from tally.traces.settings import SETTINGS, from_values
from tally.traces.sink import TraceSink
from tally.traces.writer import build_trace_writer

log = logging.getLogger("tally.traces")


def from_args(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> tuple[ConsumerSettings, TraceSchema]:
    """The writer's loop settings and the trace schema (flags, else ``TALLY_*``, else
    defaults); bad values exit 2 with one usage error."""
    env = os.environ if env is None else env
    args = sys.argv[1:] if argv is None else argv
    return parse(SETTINGS, args, "tally-trace-writer", env, from_values)


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


def _run(values: dict[str, Any]) -> None:
    settings, schema = build_or_usage_error(from_values, values)
    logs.configure()
    asyncio.run(serve(settings, schema))


def _check(values: dict[str, Any]) -> None:
    settings, schema = build_or_usage_error(from_values, values)
    logs.configure()
    asyncio.run(check(settings, schema))


app = service_app(
    SETTINGS, "The trace writer: tally.traces into ClickHouse, exactly once.", _run, _check
)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m tally.traces [run|check] [flags]`` (``tally trace-writer``)."""
    settings_cli.main(app, "tally-trace-writer", argv)
