"""``make demo`` / ``tally demo``: the local service with a week of job history and live jobs.

Starts what ``tally up`` starts (Kafka, ClickHouse, aggregators, trace writer, the HTTP API;
ports from ``--*-port``, ``TALLY_KAFKA_PORT``/``TALLY_CLICKHOUSE_PORT``/``TALLY_API_PORT``, or
free ones when the defaults 9092/8123/8700 are taken), then plays the demo world
(``tally.loadtest.demo_world``: crons -> schedulers -> resource jobs per tenant on an RQ-shaped
queue, with failures, retries, queue lag, traces and queue gauges) through the real job
instrumentation: a week of history on a simulated clock, then live at the same rate until
Ctrl-C (or ``--duration`` / ``TALLY_DEMO_DURATION`` seconds). On the way out it checks that
the rollups hold exactly the runs tracked; the exit status says so.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import threading
import time
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import clickhouse_connect
from rich.console import Console

from tally.api.server import PortInUse
from tally.ingest import ClientSettings, Tracker
from tally.loadtest.demo_history import GRANULARITIES, CountingTracker, Stretch, play_world
from tally.loadtest.demo_ports import pick_ports
from tally.loadtest.demo_world import World
from tally.loadtest.exactness import Expected, compare
from tally.read import Reader
from tally.read.render import series_table
from tally.schemas.granularity import Calendar
from tally.traces.transport import TraceShipper, trace_settings
from tally.up.service import Service, UpSettings

DAY = 86400
MARKER = ".tally-demo"
AGE_MARGIN = 600  # aggregators dead-letter events older than 7 days; stay inside that
RECENT_S = 25 * 3600  # played first, by this process: what the 24h dashboards show
MONITORS = Path(__file__).with_name("demo_monitors.yaml")  # fires on the outage below
OUTAGE_S = (-30 * 60, 45 * 60)  # from/until, relative to the demo's start: fires at once


def parser() -> argparse.ArgumentParser:
    """Flags (defaults shown in --help)."""
    p = argparse.ArgumentParser(
        prog="tally demo", description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )  # fmt: skip
    add = p.add_argument
    add("--data-dir", type=Path, default=Path(".tally/demo"), help="wiped at start")
    add("--days", type=float, default=7.0, help="days of history backfilled (at most 7)")
    env_duration = os.environ.get("TALLY_DEMO_DURATION")
    add(
        "--duration", type=float, default=float(env_duration) if env_duration else None,
        help="stop after this many seconds of live traffic (env TALLY_DEMO_DURATION); "
        "default: until Ctrl-C",
    )  # fmt: skip
    for name, env, default in (("kafka", "TALLY_KAFKA_PORT", 9092),
                               ("clickhouse", "TALLY_CLICKHOUSE_PORT", 8123),
                               ("api", "TALLY_API_PORT", 8700)):  # fmt: skip
        add(
            f"--{name}-port", type=int, default=int(os.environ[env]) if env in os.environ else None,
            help=f"port (env {env}); default {default}, or a free one if that is taken",
        )  # fmt: skip
    add("--aggregators", type=int, default=2, help="aggregator processes")
    add(
        "--flush-interval", type=float, default=1.0,
        help="seconds between the aggregators' and trace writer's ClickHouse inserts",
    )  # fmt: skip
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
    (data_dir / "monitors").mkdir()
    shutil.copy(MONITORS, data_dir / "monitors" / MONITORS.name)
    ports = pick_ports(
        {"kafka": args.kafka_port, "clickhouse": args.clickhouse_port, "api": args.api_port}
    )
    settings = UpSettings(
        data_dir=data_dir, kafka_port=ports["kafka"], clickhouse_port=ports["clickhouse"],
        api_port=ports["api"], aggregators=args.aggregators,
        flush_interval_s=args.flush_interval, heartbeat_ms=1000,
        monitors_dir=data_dir / "monitors",
    )  # fmt: skip
    service = Service(settings)
    started = time.monotonic()
    console.print(
        f"[bold]Starting Kafka (:{ports['kafka']}), ClickHouse (:{ports['clickhouse']}), "
        f"{args.aggregators} aggregators and the API (:{ports['api']}) ..."
    )
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
    client_settings = ClientSettings(bootstrap_servers=service.bootstrap)
    expected = Expected(Calendar("UTC"), GRANULARITIES)
    tracker = CountingTracker(Tracker(client_settings), expected)
    shipper = TraceShipper(trace_settings(client_settings))
    now = time.time()
    days = min(args.days, 7 - AGE_MARGIN / DAY)
    first = now - days * DAY
    # The last 25 hours (whole hours: the 24h dashboards need nothing older) first, by the
    # world that then goes on live; then the days before them, by a world of their own.
    recent = max(first, now - RECENT_S - now % 3600)
    t0 = time.monotonic()
    outage = (now + OUTAGE_S[0], now + OUTAGE_S[1])
    world = World(tracker, shipper, recent, outage=outage)
    runs = play_world(world, shipper, Stretch(recent, recent, now))
    tracker.flush(120)
    shipper.flush(120)
    console.print(
        f"Played the last {(now - recent) / 3600:.0f} hours ({runs:,} job runs) in "
        f"{time.monotonic() - t0:.1f}s"
    )
    older = World(tracker, shipper, first, seed=7) if recent > first else None
    ready_from = int(recent) + (3600 if older is not None else 0)  # the seam's spill-over
    # Wait for it before playing older days: the newcomer's first view gets the CPU first.
    _announce_ready(console, service, expected.totals, ready_from, stop, t0)
    samples = world.samples
    if older is not None:
        runs += play_world(older, shipper, Stretch(first, now - 2 * DAY, recent))
        samples += older.samples
    tracker.flush(120)
    shipper.flush(120)
    sent_s = time.monotonic() - t0
    per_minute = runs / (days * 1440)
    console.print(
        f"Backfilled {runs:,} job runs and {samples:,} queue samples over the past "
        f"{days:g} days ({per_minute:.1f} runs/min) in {sent_s:.1f}s"
    )
    with _client(service) as client:
        _wait_for(client, expected.totals, stop, timeout=300)
    console.print(f"  in the rollups {time.monotonic() - t0:.1f}s after the backfill started")
    reader = Reader(service.read_settings())
    series = reader.series(
        "event::resource", ["total.count", "total.state.*"], ["total.state.success / total.count"],
        since="7d", granularity="1d", top=4,
    )  # fmt: skip
    console.print(series_table(series))
    console.print(_try_this(service), soft_wrap=True, highlight=False)
    live = _live(args, console, service, world, stop)
    tracker.flush(60)
    shipper.flush(60)
    tracker.close()
    shipper.close()
    console.print(f"Live jobs stopped after {live:,} runs; checking the rollups ...")
    with _client(service) as client:
        _wait_for(client, expected.totals, threading.Event(), timeout=180)
        result = compare(expected.totals, fetch_counts(client))
    reader.close()
    verdict = "[green]exact" if result.exact else f"[red]NOT exact: {result.mismatches[:5]}"
    console.print(f"Rollups vs runs tracked: {result.actual_slots:,} slots, {verdict}[/]")
    return 0 if result.exact else 1


def fetch_counts(client: Any, database: str = "tally") -> Any:
    """The rollups' ``total.count`` of the job keys (what ``CountingTracker`` expects)."""
    result = client.query(
        f"SELECT granularity, key, toUnixTimestamp(bucket), path, sum(value) "
        f"FROM {database}.rollups WHERE path = 'total.count' AND granularity IN ('1m','1h','1d')"
        f" AND key NOT LIKE 'event::queue%' GROUP BY granularity, key, bucket, path"
    )
    return Counter({(g, k, int(b), p): v for g, k, b, p, v in result.result_rows})


def _client(service: Service) -> closing:
    """A sync clickhouse-connect client to the service's ClickHouse, closed on exit."""
    s = service.read_settings().clickhouse
    url = urlparse(s.url)
    return closing(
        clickhouse_connect.get_client(
            host=url.hostname, port=url.port, username=s.user, password=s.password
        )
    )


def _announce_ready(
    console: Console,
    service: Service,
    totals: Counter,
    since: int,
    stop: threading.Event,
    t0: float,
) -> None:
    """Say when the rollups hold the recent stretch (from ``since`` on): the 24h views."""
    with _client(service) as client:
        if _wait_for(client, totals, stop, timeout=300, granularity="1h", since=since):
            console.print(
                f"  [bold]the last {(time.time() - since) / 3600:.0f} hours are in the rollups "
                f"{time.monotonic() - t0:.1f}s after the backfill started:[/] dashboards at "
                f"{service.api_url}/ui/ (older days follow)",
                soft_wrap=True,
            )


def _wait_for(
    client: Any,
    totals: Counter,
    stop: threading.Event,
    timeout: float,
    granularity: str = "1d",
    since: int = 0,
) -> bool:
    """Wait until the rollups count every run of ``totals`` (``Expected.totals``) in buckets
    from ``since`` on (unix seconds) at ``granularity``; False on timeout or stop."""
    slots = totals.items()
    want = sum(n for (g, _, bucket, _), n in slots if g == granularity and bucket >= since)
    deadline = time.monotonic() + timeout
    query = (
        "SELECT sum(value) FROM tally.rollups WHERE path = 'total.count'"
        " AND granularity = {granularity:String} AND bucket >= toDateTime({since:UInt32})"
        " AND key NOT LIKE 'event::queue%'"
    )
    params = {"granularity": granularity, "since": since}
    while time.monotonic() < deadline and not stop.is_set():
        got = client.query(query, parameters=params).result_rows[0][0] or 0
        if got >= want:
            return True
        time.sleep(1.0)
    return False


def _live(
    args: argparse.Namespace,
    console: Console,
    service: Service,
    world: World,
    stop: threading.Event,
) -> int:
    """Play the world in real time: the same schedule, so the same rate as the history."""
    deadline = None if args.duration is None else time.monotonic() + args.duration
    runs, last_report = 0, time.monotonic()
    console.print(
        "Running live jobs at the history's rate"
        + (f" for {args.duration:.0f}s" if deadline else " until Ctrl-C")
        + " ..."
    )
    while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
        runs += world.run_until(time.time())
        service.supervise()
        if time.monotonic() - last_report >= 15:
            console.print(f"  {runs:,} live runs · {service.status()}", soft_wrap=True)
            last_report = time.monotonic()
        stop.wait(1.0)
    return runs


def _try_this(service: Service) -> str:
    data_dir = service.settings.data_dir
    tally = Path(sys.executable).parent / "tally"
    token = data_dir / "secrets" / "api-read-token"
    return "\n".join(
        [
            "",
            "[bold]Try it[/] (in another terminal; the data dir's stack.json has the URLs):",
            f"  export TALLY_DATA_DIR={data_dir}",
            f"  {tally} keys 'event::schedule::*'",
            f"  {tally} series event::cron -p 'jobs.*.count' --since 24h",
            f"  {tally} series event::job -p 'total.state.*' "
            "-e 'total.state.success / total.count' --since 7d -g 1d",
            f"  {tally} traces list event::job --state failure",
            f'  {tally} sql "SELECT key, sum(value) AS n FROM tally.rollups_1d '
            "WHERE path = 'total.count' GROUP BY key ORDER BY n DESC LIMIT 5\"",
            f'  curl -H "Authorization: Bearer $(cat {token})" '
            f"'{service.api_url}/api/v1/series?key=event::cron&path=total.count&since=7d"
            "&granularity=1d'",
            f"  Kafka {service.bootstrap} · ClickHouse {service.clickhouse_url} · "
            f"API schema {service.api_url}/api/v1/schema",
            f"  Dashboard:  {service.api_url}/ui/  (sign in with the token in {token})",
            f"  Alerts:     {data_dir / 'logs' / 'monitors.log'}  (the accounting API is down "
            "this hour: job-failure-rate fires; its link opens the monitor's page)",
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
