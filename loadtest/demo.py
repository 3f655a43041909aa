"""``make demo`` / ``tally demo``: the local service with a week of history and live traffic.

Starts what ``tally up`` starts (Kafka, ClickHouse, 2 aggregators, the HTTP API on
127.0.0.1:9092/8123/8700 unless moved), backfills a week of seeds-shaped job events at a
compressed rate, prints a series from the read API, the URLs and commands to try, then sends
live traffic until Ctrl-C (or ``--duration`` / ``TALLY_DEMO_DURATION`` seconds). On the way out
it checks that the rollups hold exactly what was sent; the exit status says so.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import clickhouse_connect
from rich.console import Console

from tally.api.server import PortInUse
from tally.ingest import ClientSettings, Tracker
from tally.loadtest.exactness import Expected, compare, fetch_totals
from tally.loadtest.workloads import CALC_KEY, Workload
from tally.read import Reader
from tally.read.render import series_table
from tally.schemas.granularity import Calendar
from tally.up.service import Service, UpSettings

WEEK = 7 * 86400
MARKER = ".tally-demo"
AGE_MARGIN = 600  # aggregators dead-letter events older than 7 days; stay inside that


def parser() -> argparse.ArgumentParser:
    """Flags (defaults shown in --help)."""
    p = argparse.ArgumentParser(
        prog="tally demo", description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )  # fmt: skip
    add = p.add_argument
    add("--data-dir", type=Path, default=Path(".tally/demo"), help="wiped at start")
    add("--history-events", type=int, default=200_000, help="events backfilled over a week")
    add("--rate", type=int, default=200, help="live events per second")
    env_duration = os.environ.get("TALLY_DEMO_DURATION")
    add(
        "--duration", type=float, default=float(env_duration) if env_duration else None,
        help="stop after this many seconds of live traffic (env TALLY_DEMO_DURATION); "
        "default: until Ctrl-C",
    )  # fmt: skip
    add("--kafka-port", type=int, default=9092, help="port of the local Kafka")
    add("--clickhouse-port", type=int, default=8123, help="port of the local ClickHouse")
    add("--api-port", type=int, default=8700, help="port of the HTTP API")
    add("--aggregators", type=int, default=2, help="aggregator processes")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the demo; exit status 0 only if the rollups are exact."""
    args = parser().parse_args(argv)
    console = Console()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: _interrupt(stop))
    data_dir = args.data_dir.expanduser().resolve()
    if not _is_demo_dir(data_dir):
        console.print(f"[red]error:[/] {data_dir} is not a demo directory; refusing to wipe it")
        return 2
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    (data_dir / MARKER).write_text("tally demo data; wiped at every demo start\n")
    settings = UpSettings(
        data_dir=data_dir, kafka_port=args.kafka_port, clickhouse_port=args.clickhouse_port,
        api_port=args.api_port, aggregators=args.aggregators, flush_interval_s=1.0,
    )  # fmt: skip
    service = Service(settings)
    started = time.monotonic()
    console.print("[bold]Starting Kafka, ClickHouse, 2 aggregators and the API...")
    try:
        service.start(say=lambda text: console.print(f"  {text}"))
    except PortInUse as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    try:
        return _run(args, console, service, stop, started)
    finally:
        console.print("stopping ...")
        service.stop()
        console.print("stopped cleanly")


def _is_demo_dir(path: Path) -> bool:
    """Missing, empty, marked by a demo, or left by the previous demo (a bare stack dir)."""
    if not path.exists() or not any(path.iterdir()):
        return True
    names = {p.name for p in path.iterdir()}
    old_demo = names <= {"clickhouse", "kafka", "aggregator-0.log", "aggregator-1.log"}
    return (path / MARKER).exists() or old_demo


def _interrupt(stop: threading.Event) -> None:
    """First Ctrl-C: stop the traffic and check; a second one: stop without waiting."""
    if stop.is_set():
        raise KeyboardInterrupt
    stop.set()


def _run(
    args: argparse.Namespace,
    console: Console,
    service: Service,
    stop: threading.Event,
    started: float,
) -> int:
    console.print(f"  up in {time.monotonic() - started:.1f}s: {service.status()}", soft_wrap=True)
    expected = Expected(Calendar("UTC"), ("1m", "1h", "1d"))
    tracker = Tracker(ClientSettings(bootstrap_servers=service.bootstrap))
    workload = Workload(seed=42)
    now = int(time.time())
    t0 = time.monotonic()
    for event in workload.events(args.history_events, now - WEEK + AGE_MARGIN, WEEK - AGE_MARGIN):
        tracker.track(event.keys, event.values, at=event.at, route=event.route)
        expected.add(event)
        if stop.is_set():
            break
    tracker.flush(120)
    console.print(
        f"Backfilled {args.history_events:,} events over the past week in "
        f"{time.monotonic() - t0:.1f}s"
    )
    reader = Reader(service.read_settings())
    with _client(service) as client:
        _wait_until_exact(client, expected, stop, timeout=300)
    series = reader.series(
        CALC_KEY, ["count", "codes.*"], ["success / count"], since="7d", granularity="1d", top=3
    )
    console.print(series_table(series))
    console.print(_try_this(service), soft_wrap=True, highlight=False)
    sent = _live(args, console, service, tracker, workload, expected, stop)
    tracker.flush(60)
    tracker.close()
    console.print(f"Live traffic stopped after {sent:,} events; checking the rollups ...")
    with _client(service) as client:
        _wait_until_exact(client, expected, threading.Event(), timeout=180)
        result = compare(expected.totals, fetch_totals(client))
    reader.close()
    verdict = "[green]exact" if result.exact else f"[red]NOT exact: {result.mismatches[:5]}"
    console.print(f"Rollups vs sent: {result.actual_slots:,} slots, {verdict}[/]")
    return 0 if result.exact else 1


def _client(service: Service) -> closing:
    """A sync clickhouse-connect client to the service's ClickHouse, closed on exit."""
    s = service.read_settings().clickhouse
    url = urlparse(s.url)
    return closing(
        clickhouse_connect.get_client(
            host=url.hostname, port=url.port, username=s.user, password=s.password
        )
    )


def _wait_until_exact(
    client: Any, expected: Expected, stop: threading.Event, timeout: float
) -> None:
    want = sum(expected.totals.values())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop.is_set():
        got = client.query("SELECT sum(value) FROM tally.rollups").result_rows[0][0] or 0
        if got >= want:
            return
        time.sleep(0.5)


def _live(
    args: argparse.Namespace,
    console: Console,
    service: Service,
    tracker: Tracker,
    workload: Workload,
    expected: Expected,
    stop: threading.Event,
) -> int:
    deadline = None if args.duration is None else time.monotonic() + args.duration
    sent, last_report = 0, time.monotonic()
    console.print(
        f"Sending live traffic at {args.rate}/s"
        + (f" for {args.duration:.0f}s" if deadline else " until Ctrl-C")
        + " ..."
    )
    while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
        tick = time.monotonic()
        for event in workload.events(args.rate, int(time.time()), 1):
            tracker.track(event.keys, event.values, at=event.at, route=event.route)
            expected.add(event)
        sent += args.rate
        service.supervise()
        if time.monotonic() - last_report >= 15:
            console.print(f"  {sent:,} live events · {service.status()}", soft_wrap=True)
            last_report = time.monotonic()
        stop.wait(max(0.0, 1.0 - (time.monotonic() - tick)))
    return sent


def _try_this(service: Service) -> str:
    data_dir = service.settings.data_dir
    tally = Path(sys.executable).parent / "tally"
    token = data_dir / "secrets" / "api-read-token"
    return "\n".join(
        [
            "",
            "[bold]Try it[/] (in another terminal):",
            f"  export TALLY_DATA_DIR={data_dir}",
            f"  {tally} keys 'event::schedule::*'",
            f"  {tally} series {CALC_KEY} -p count -p 'codes.*' -e 'success / count' "
            "--since 7d -g 1d",
            f"  {tally} series event::schedule -p 'tenants.*.count' --top 5 --since 24h",
            f'  {tally} sql "SELECT key, sum(value) AS n FROM tally.rollups_1d '
            "WHERE path = 'count' GROUP BY key ORDER BY n DESC LIMIT 5\"",
            f'  curl -H "Authorization: Bearer $(cat {token})" '
            f"'{service.api_url}/api/v1/series?key=event::cron&path=total.count&since=7d"
            "&granularity=1d'",
            f"  API schema: {service.api_url}/api/v1/schema",
            f"  Dashboard:  {service.api_url}/ui/  (sign in with the token in {token})",
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
