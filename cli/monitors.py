"""``tally monitors run|test|list|report``: the monitor service, backtests and listings."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer

from tally.cli.errors import unreachable
from tally.cli.options import (
    ClickHouseTarget,
    Json,
    clickhouse_options,
    command_group,
)
from tally.engine.settings import CONSUMER
from tally.kafka.settings import AGGREGATOR_GROUP, BOOTSTRAP, DEFAULT_BOOTSTRAP, EVENTS_TOPIC, TOPIC

app = command_group(
    "monitors", "Monitors as code: run the service, backtest a file, list definitions and states."
)
Paths = Annotated[list[Path], typer.Argument(help="Monitor files or directories (*.yaml).")]
Bootstrap = Annotated[
    str,
    typer.Option("--bootstrap", envvar=BOOTSTRAP.env, help="Kafka of the aggregators."),
]


def _load(paths: list[Path], channels: bool = True):
    """Definitions, their errors printed; with ``channels``, channels are checked against this
    environment (``url_env`` set...)."""
    import os

    from tally.monitors.loader import load_paths

    loaded = load_paths(paths, os.environ if channels else None)
    for error in loaded.errors:
        typer.echo(f"error: {error}", err=True)
    return loaded


@app.command()
@clickhouse_options
def run(
    paths: Paths,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    topic: Annotated[str, typer.Option(envvar=TOPIC.env, help="Events topic.")] = EVENTS_TOPIC,
    group: Annotated[
        str, typer.Option(envvar=CONSUMER["group"].env, help="The aggregators' consumer group.")
    ] = AGGREGATOR_GROUP,
    grace: Annotated[
        float, typer.Option(help="Seconds the client may hold an event before sending it.")
    ] = 10.0,
    tick: Annotated[float, typer.Option(help="Seconds between evaluations.")] = 5.0,
    base_url: Annotated[
        str, typer.Option(envvar="TALLY_DASHBOARD_URL", help="Dashboard URL for links.")
    ] = "",
    lease: Annotated[
        bool, typer.Option(help="Elect one evaluating replica via a Kafka consumer group.")
    ] = True,
    lease_session_ms: Annotated[
        int, typer.Option(help="Lease group session timeout: how fast a replica takes over.")
    ] = 10_000,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            envvar="TALLY_MONITORS_METRICS_PORT",
            help="Serve /metrics on this port (0: a free one); not served by default.",
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(envvar="TALLY_METRICS_HOST", help="Address of /metrics.")
    ] = "127.0.0.1",
    delivery_budget: Annotated[
        float, typer.Option(help="Seconds one delivery may take, all its retries included.")
    ] = 60.0,
    clock_file: Annotated[
        Path | None, typer.Option(hidden=True, help="Tests: read 'now' from this file.")
    ] = None,
    *,
    target: ClickHouseTarget,
) -> None:
    """Evaluate monitors on durable buckets until SIGINT/SIGTERM; files reload on change;
    deliveries run beside evaluation, one worker per channel.
    Kafka TLS/SASL: the client's TALLY_KAFKA_SECURITY_PROTOCOL, _SASL_*, _SSL_CAFILE."""
    from tally.ingest.settings import ClientSettings
    from tally.monitors.metrics import MetricsPortInUse
    from tally.monitors.settings import MonitorSettings, build_service

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    _load(paths)
    settings = MonitorSettings(
        paths=tuple(paths), read=target.settings(),
        bootstrap=bootstrap, topic=topic, group=group, grace_s=grace, tick_s=tick,
        base_url=base_url, lease=lease, lease_session_ms=lease_session_ms,
        security=ClientSettings.from_env().security,  # TALLY_KAFKA_SECURITY_PROTOCOL, SASL...
        metrics_port=metrics_port, metrics_host=metrics_host, delivery_budget_s=delivery_budget,
    )  # fmt: skip

    async def main() -> None:
        service = build_service(settings)
        if clock_file is not None:
            service.clock = lambda: float(clock_file.read_text().strip())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await service.start()
            await service.run(stop)
        finally:
            await service.close()

    try:
        asyncio.run(main())
    except MetricsPortInUse as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
@clickhouse_options
def test(
    path: Annotated[Path, typer.Argument(help="A monitor file (or directory).")],
    since: Annotated[
        str, typer.Option(help="Replay from: duration ago (7d), ISO or unix s.")
    ] = "7d",
    until: Annotated[str, typer.Option(help="Replay until (exclusive).")] = "now",
    monitor: Annotated[
        list[str] | None, typer.Option("--monitor", "-m", help="Only these monitors.")
    ] = None,
    all_changes: Annotated[
        bool, typer.Option("--all-changes", help="Also print pending/no-data changes.")
    ] = False,
    *,
    target: ClickHouseTarget,
) -> None:
    """Replay monitors over history: print when each would have fired and resolved."""
    from tally.monitors.backtest import backtest
    from tally.read import AsyncReader, ReadError
    from tally.read.timerange import resolve

    loaded = _load([path], channels=False)  # a backtest sends nothing
    chosen = [m for m in loaded.monitors if not monitor or m.name in monitor]
    if not chosen:
        typer.echo("error: no valid monitor to test", err=True)
        raise typer.Exit(2)
    try:
        start, end = resolve(since, until)
    except ReadError as exc:
        typer.echo(f"error: {exc.reason}", err=True)
        raise typer.Exit(2) from None
    settings = target.settings()

    async def main() -> int:
        total = 0
        async with AsyncReader(settings) as reader:
            for m in chosen:
                events = await backtest(reader, m, start, end, all_changes)
                firing = sum(e.notify == "firing" for e in events)
                typer.echo(f"{m.name} ({m.source}): {firing} firing, {len(events)} events")
                for e in events:
                    typer.echo(f"  {e.line()}")
                total += len(events)
        return total

    try:
        asyncio.run(main())
    except ReadError as exc:
        typer.echo(f"error: {exc.field}: {exc.reason}", err=True)
        raise typer.Exit(2) from None
    except Exception as exc:  # clickhouse-connect wraps transport and server errors alike
        raise unreachable(f"ClickHouse at {settings.clickhouse.url}", exc) from None
    if loaded.errors:
        raise typer.Exit(2)


@app.command("list")
@clickhouse_options
def list_(
    paths: Paths,
    state: Annotated[bool, typer.Option(help="Also show stored states and deliveries.")] = False,
    json: Json = False,
    *,
    target: ClickHouseTarget,
) -> None:
    """List monitor definitions (errors first), optionally with their stored states."""
    from tally.monitors.listing import describe, stored_states, timings

    loaded = _load(paths)
    rows = describe(loaded)
    states: dict = {}
    counts: dict = {}
    if state:
        settings = target.settings()
        try:
            states, counts = asyncio.run(stored_states(settings))
        except Exception as exc:
            raise unreachable(f"ClickHouse at {settings.clickhouse.url}", exc) from None
    if json:
        import msgspec

        out = {"monitors": rows, "errors": list(loaded.errors), "states": states,
               "deliveries": counts}  # fmt: skip
        typer.echo(msgspec.json.encode(out).decode())
    else:
        for r in rows:
            typer.echo(f"{r.name:<40} {r.condition:<10} {r.key} {r.what} every {r.granularity}")
            typer.echo(f"    {timings(r)}")
            for seg, st in states.get(r.name, {}).items():
                typer.echo(f"    {seg or '-':<30} {st['state']}")
        if counts:
            typer.echo("deliveries: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if loaded.errors:
        raise typer.Exit(2)


@app.command()
@clickhouse_options
def report(
    path: Annotated[Path, typer.Argument(help="A file (or directory) with `reports:`.")],
    name: Annotated[list[str] | None, typer.Option("--name", help="Only these reports.")] = None,
    base_url: Annotated[
        str, typer.Option(envvar="TALLY_DASHBOARD_URL", help="Dashboard URL.")
    ] = "",
    out: Annotated[
        Path | None, typer.Option(help="Also write the digest (text + PNGs) into this directory.")
    ] = None,
    *,
    target: ClickHouseTarget,
) -> None:
    """Build and send scheduled digests now (the service sends them on schedule)."""
    from tally.monitors.report import send_reports

    loaded = _load([path])
    chosen = [r for r in loaded.reports if not name or r.name in name]
    if not chosen:
        typer.echo("error: no report to send", err=True)
        raise typer.Exit(2)
    settings = target.settings()
    try:
        sent = asyncio.run(send_reports(settings, loaded.channels, chosen, base_url, out))
    except Exception as exc:  # reading (ClickHouse) or sending (a channel) failed
        text = str(exc).strip()
        typer.echo(f"error: {text.splitlines()[0] if text else type(exc).__name__}", err=True)
        raise typer.Exit(1) from None
    for line in sent:
        typer.echo(line)
