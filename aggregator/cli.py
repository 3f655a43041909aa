"""``tally-aggregator`` / ``python -m tally.aggregator``: run one aggregator process.

Subcommands: ``run`` (default) consumes until SIGTERM/SIGINT, then flushes, commits and exits
0; ``check`` verifies that Kafka and ClickHouse are reachable and applies the DDL.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

from tally.aggregator.allocator import pin_mmap_threshold
from tally.aggregator.metrics import AggregatorMetrics
from tally.aggregator.settings import DESCRIPTION, SETTINGS, AggregatorSettings, from_values
from tally.aggregator.sink import RollupSink
from tally.aggregator.worker import build_aggregator
from tally.clickhouse.sink_base import apply_ddl_once
from tally.engine import logs
from tally.engine.metrics import MetricsPortInUse
from tally.engine.offsets import StartRefused
from tally.kafka.admin import count_partitions
from tally.schemas import settings_cli
from tally.schemas.settings_cli import build_or_usage_error, service_app

log = logging.getLogger("tally.aggregator")

# A fold holds its entries (lists, dicts) until the flush and creates no reference cycles; with
# CPython's default thresholds (700, 10, 10) the collector rescans them all about every 70k
# allocations, which took about half of the fold's CPU (BENCHMARKS.md, wire v3). Collections
# stay on, only rarer.
FOLD_GC_THRESHOLD = (100_000, 50, 100)


async def serve(settings: AggregatorSettings) -> None:
    """Run until a termination signal arrives."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    metrics = AggregatorMetrics()
    port = None
    if settings.metrics_port is not None:
        port = metrics.serve(settings.metrics_port, settings.metrics_host)
    log.info(
        "aggregator starting",
        extra={
            "topic": settings.topic,
            "group": settings.group,
            "clickhouse": settings.clickhouse.url,
            "metrics": f"{settings.metrics_host}:{port}" if port is not None else None,
        },
    )
    for warning in settings.startup_warnings():
        log.warning(warning)
    await build_aggregator(settings, metrics).run(stop)
    log.info("aggregator stopped cleanly")


async def check(settings: AggregatorSettings) -> None:
    """Reach ClickHouse (and apply the DDL) and list the topic's partitions."""
    await apply_ddl_once(RollupSink(settings.clickhouse, settings.schema))
    await print_topic_partitions(settings)


async def print_topic_partitions(settings: AggregatorSettings) -> None:
    """Print ``ok: ClickHouse <url>, topic <t>: N partitions`` (raises if Kafka is unreachable)."""
    count = await count_partitions(settings.bootstrap_servers, settings.topic, settings.security)
    print(f"ok: ClickHouse {settings.clickhouse.url}, topic {settings.topic}: {count} partitions")


def run(values: dict[str, Any]) -> None:
    """``run``: serve until SIGTERM/SIGINT; a taken metrics port or a refused start exits 2."""
    settings = build_or_usage_error(from_values, values)
    logs.configure()
    gc.set_threshold(*FOLD_GC_THRESHOLD)
    pin_mmap_threshold()
    try:
        _run(serve(settings))
    except (MetricsPortInUse, StartRefused) as exc:
        log.error("cannot start: %s", exc)
        sys.exit(2)


def check_command(values: dict[str, Any]) -> None:
    """``check``: reach ClickHouse (applying the DDL) and Kafka, then exit."""
    settings = build_or_usage_error(from_values, values)
    logs.configure()
    _run(check(settings))


app = service_app(SETTINGS, DESCRIPTION, run, check_command)


def main(argv: Sequence[str] | None = None) -> None:
    """``tally-aggregator`` / ``python -m tally.aggregator [run|check] [flags]``."""
    settings_cli.main(app, "tally-aggregator", argv)


def _run(main_coroutine) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(main_coroutine)
    else:
        uvloop.run(main_coroutine)


if __name__ == "__main__":
    main()
