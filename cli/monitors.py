"""``tally monitors run|check|test|list|report``: the monitor service (``run`` and ``check``
from its settings table), backtests, listings and digests."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Annotated, Any

import typer

from tally.cli.errors import unreachable
from tally.cli.options import (
    ClickHouseTarget,
    Json,
    clickhouse_options,
    command_group,
)
from tally.monitors.settings import MonitorSettings, from_values
from tally.schemas.settings_cli import build_or_usage_error, typer_command
from tally.schemas.settings_table import Setting, SettingsTable
from tally.up.monitors_command import MONITORS
from tally.up.read_target import read_settings_from

app = command_group(
    "monitors", "Monitors as code: run the service, backtest a file, list definitions and states."
)
Paths = Annotated[list[Path], typer.Argument(help="Monitor files or directories (*.yaml).")]
# ``run`` and ``check`` share one table: the service's rows, where ClickHouse is, a test hook.
CLOCK_FILE = Setting("clock_file", Path, None, "--clock-file", None,
                     "tests: read 'now' from this file", hidden=True)  # fmt: skip
SERVICE = MONITORS + SettingsTable((CLOCK_FILE,))


def _load(paths: list[Path], channels: bool = True):
    """Definitions, their errors printed; with ``channels``, channels are checked against this
    environment (``url_env`` set...)."""
    import os

    from tally.monitors.loader import load_paths

    loaded = load_paths(paths, os.environ if channels else None)
    for error in loaded.errors:
        typer.echo(f"error: {error}", err=True)
    return loaded


def _settings(values: dict[str, Any]) -> MonitorSettings:
    return from_values(values, read_settings_from(values))


def _run(values: dict[str, Any]) -> None:
    """Evaluate monitors on durable buckets until SIGINT/SIGTERM (see ``run``'s help)."""
    from tally.monitors.metrics import MetricsPortInUse
    from tally.monitors.settings import build_service

    settings = build_or_usage_error(_settings, values)
    clock_file: Path | None = values["clock_file"]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    _load(list(settings.paths))

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


def _check(values: dict[str, Any]) -> None:
    """The settings (a bad one exits 2) and the monitor files (``file:line`` errors, channels
    unusable in this environment: exit 1); reaches nothing."""
    settings = build_or_usage_error(_settings, values)
    loaded = _load(list(settings.paths))
    if loaded.errors:
        raise typer.Exit(1)
    kafka = settings.bootstrap or "none (wall-clock watermark)"
    typer.echo(
        f"ok: {len(loaded.monitors)} monitors, {len(loaded.reports)} reports, "
        f"{len(loaded.channels)} channels in {', '.join(map(str, settings.paths))}; "
        f"ClickHouse {settings.read.clickhouse.url}, Kafka {kafka}"
    )


app.command(
    "run",
    help="Evaluate monitors on durable buckets until SIGINT/SIGTERM; files reload on change; "
    "deliveries run beside evaluation, one worker per channel.",
)(typer_command(SERVICE, _run))
app.command(
    "check",
    help="Check the settings and the monitor files (file:line errors, channels this environment "
    "cannot deliver to), then exit: 0 when both are fine; nothing is started or reached.",
)(typer_command(SERVICE, _check))


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
