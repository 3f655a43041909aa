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

from tally.clickhouse.settings import BadClickHouseUrl
from tally.engine import logs
from tally.engine.metrics import EngineMetrics
from tally.engine.settings import ConsumerSettings
from tally.kafka.admin import count_partitions
from tally.schemas.settings_table import BadSetting, argparse_parser
from tally.traces.ddl import TraceSchema
from tally.traces.settings import SETTINGS, from_values
from tally.traces.sink import TraceSink
from tally.traces.writer import build_trace_writer

log = logging.getLogger("tally.traces")


def parser() -> argparse.ArgumentParser:
    """Flags; each defaults to its ``TALLY_*`` environment variable."""
    return argparse_parser(SETTINGS, "tally-trace-writer", __doc__)


def from_args(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> tuple[ConsumerSettings, TraceSchema]:
    """The writer's loop settings and the trace schema."""
    env = os.environ if env is None else env
    p = parser()
    given = vars(p.parse_args(argv))
    try:
        return from_values(SETTINGS.resolve(given, env))
    except BadSetting as exc:
        p.exit(2, f"{p.prog}: error: {exc}\n")
    except BadClickHouseUrl as exc:
        p.exit(2, f"{p.prog}: error: --clickhouse-url: {exc}\n")


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
