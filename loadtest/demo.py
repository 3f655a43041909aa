"""``make demo``: the whole pipeline on this machine, end to end, then everything stops.

Starts Kafka and ClickHouse locally, two aggregators, sends a workload shaped like the seeds'
calculation, refresh and cron/schedule jobs, waits until the rollups hold every event, prints
answers to the product's questions with the documented queries, checks exactness and stops.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tally.embedded.stack import StackConfig, start_stack
from tally.ingest import ClientSettings, Tracker
from tally.loadtest.exactness import Expected, compare, fetch_totals
from tally.loadtest.workloads import CALC_KEY, Workload
from tally.rollups.queries import QUERIES
from tally.schemas.granularity import Calendar


def main(argv: list[str] | None = None) -> int:
    """Run the demo; exit status 0 only if the rollups are exact."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--hours", type=int, default=6, help="spread event times over this many hours")
    p.add_argument("--workdir", type=Path, default=Path(".tally/demo"))
    args = p.parse_args(argv)
    console = Console()
    shutil.rmtree(args.workdir, ignore_errors=True)
    started = time.monotonic()
    console.print(
        "[bold]Starting Kafka (KRaft), ClickHouse (chDB behind HTTP) and 2 aggregators..."
    )
    with start_stack(args.workdir, StackConfig(partitions=8, aggregators=2)) as stack:
        console.print(
            f"  kafka {stack.kafka.bootstrap}, clickhouse {stack.clickhouse.url} "
            f"({time.monotonic() - started:.1f}s)"
        )
        expected = Expected(Calendar("UTC"), ("1m", "1h", "1d"))
        tracker = Tracker(ClientSettings(bootstrap_servers=stack.kafka.bootstrap))
        end = int(time.time())
        t0 = time.monotonic()
        for event in Workload(seed=42).events(
            args.events, end - args.hours * 3600, args.hours * 3600
        ):
            tracker.track(event.keys, event.values, at=event.at, route=event.route)
            expected.add(event)
        tracked = time.monotonic() - t0
        tracker.flush(120)
        console.print(
            f"Tracked {args.events:,} events (fan-out to {len(expected.totals):,} "
            f"key/bucket/path slots) in {tracked:.1f}s; client stats: {tracker.stats()}"
        )
        tracker.close()
        client = stack.clickhouse_client()
        want = sum(expected.totals.values())
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            got = client.query("SELECT sum(value) FROM tally.rollups").result_rows[0][0] or 0
            if got >= want:
                break
            time.sleep(0.5)
        console.print(
            f"All events in the rollups {time.monotonic() - t0:.1f}s after the first track()."
        )
        print_answers(console, client, end, args.hours)
        codes = stack.stop_aggregators()
        result = compare(expected.totals, fetch_totals(client))
        verdict = "[green]exact" if result.exact else f"[red]NOT exact: {result.mismatches[:5]}"
        console.print(
            f"Rollups vs sent: {result.actual_slots:,} slots, {verdict}[/]; "
            f"aggregators exited {codes}"
        )
    console.print(f"Everything stopped. Total {time.monotonic() - started:.1f}s.")
    return 0 if result.exact and codes == [0, 0] else 1


def print_answers(console: Console, client, end: int, hours: int) -> None:
    """A few of the product's questions, answered by the documented queries."""
    start = (end - hours * 3600) // 3600 * 3600
    params = {
        "start": datetime.fromtimestamp(start, UTC),
        "end": datetime.fromtimestamp(end + 3600, UTC),
    }
    shown = [
        ("Calculations per hour: success rate", "success_rate", {"key": CALC_KEY}),
        (
            "Calculation duration (ms): mean and stddev per hour",
            "mean_stddev",
            {"key": CALC_KEY, "measure": "duration"},
        ),
        (
            "Calculation result codes",
            "breakdown",
            {"key": CALC_KEY, "prefix": "codes.", "suffix": ""},
        ),
        (
            "Schedule runs per tenant",
            "breakdown",
            {"key": "event::schedule", "prefix": "tenants.", "suffix": ".count"},
        ),
    ]
    for title, name, extra in shown:
        result = client.query(QUERIES[name].sql("tally", "1h"), parameters={**params, **extra})
        table = Table(title=title)
        for column in result.column_names:
            table.add_column(column)
        for row in result.result_rows[:8]:
            table.add_row(*(_cell(v) for v in row))
        console.print(table)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() else f"{value:,.4g}"
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
