"""``tally-aggregator`` / ``python -m tally.aggregator``: run one aggregator process.

Subcommands: ``run`` (default) consumes until SIGTERM/SIGINT, then flushes, commits and exits
0; ``check`` verifies that Kafka and ClickHouse are reachable and applies the DDL.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from tally.aggregator.metrics import AggregatorMetrics
from tally.aggregator.settings import AggregatorSettings, from_args
from tally.aggregator.sink import RollupSink
from tally.aggregator.worker import build_aggregator
from tally.engine import logs
from tally.engine.metrics import MetricsPortInUse
from tally.engine.offsets import StartRefused
from tally.kafka.admin import count_partitions

log = logging.getLogger("tally.aggregator")


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
    sink = RollupSink(settings.clickhouse, settings.schema)
    await sink.start()
    await sink.apply_ddl()
    await sink.close()
    await print_topic_partitions(settings)


async def print_topic_partitions(settings: AggregatorSettings) -> None:
    """Print ``ok: ClickHouse <url>, topic <t>: N partitions`` (raises if Kafka is unreachable)."""
    count = await count_partitions(settings.bootstrap_servers, settings.topic, settings.security)
    print(f"ok: ClickHouse {settings.clickhouse.url}, topic {settings.topic}: {count} partitions")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = "run"
    if args and args[0] in ("run", "check"):
        command = args.pop(0)
    settings = from_args(args)
    logs.configure()
    runner = serve if command == "run" else check
    try:
        _run(runner(settings))
    except (MetricsPortInUse, StartRefused) as exc:
        log.error("cannot start: %s", exc)
        sys.exit(2)


def _run(main_coroutine) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(main_coroutine)
    else:
        uvloop.run(main_coroutine)


if __name__ == "__main__":
    main()
