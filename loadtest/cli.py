"""``tally-loadtest`` / ``python -m tally.loadtest.cli``: load tests and benchmarks.

    tally-loadtest run --rate 30000 --duration 300 --producers 2
    tally-loadtest run --bootstrap host:9092 --clickhouse-url http://host:8123   # external
    tally-loadtest show loadtest-results/<run>/report.json

``run`` starts the embedded stack (Kafka KRaft, ClickHouse on chDB, aggregators) unless
``--bootstrap`` and ``--clickhouse-url`` are given, drives the load, and writes
``report.json``, ``chart.png`` and the terminal tables into ``--out``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from tally.kafka.settings import AGGREGATOR_GROUP, EVENTS_TOPIC
from tally.loadtest.chart import write_chart
from tally.loadtest.config import RunConfig
from tally.loadtest.monitor import Sample
from tally.loadtest.render import render
from tally.loadtest.report import build, write_json
from tally.loadtest.runner import run as run_phases

app = typer.Typer(add_completion=False, help=__doc__, no_args_is_help=True)


def execute(config: RunConfig, console: Console | None = None, live: bool = True) -> dict:
    """Run, then write ``report.json`` and ``chart.png`` into ``config.out_dir``; the report."""
    console = console or Console()
    progress = Progress(
        TextColumn("[bold]load"),
        BarColumn(),
        TextColumn("{task.completed:>5.0f}/{task.total:.0f}s"),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console,
        disable=not live,
    )
    task = progress.add_task("", total=config.duration_s)
    previous: list[Sample] = []

    def on_sample(sample: Sample) -> None:
        text = ""
        if previous:
            p = previous[-1]
            dt = max(sample.t - p.t, 1e-6)
            made = (sample.tracked - p.tracked) / dt
            done = ((sample.aggregated or 0) - (p.aggregated or 0)) / dt
            agg = sample.usage.get("aggregators", {})
            text = (
                f"produced {made:>8,.0f}/s  aggregated {done:>8,.0f}/s  "
                f"lag {sample.lag_records if sample.lag_records is not None else '-'} rec  "
                f"aggregators {agg.get('cpu_pct', 0):.0f}% CPU"
            )
        previous[:] = [sample]
        progress.update(task, completed=min(sample.t, config.duration_s), description=text)

    def notify(line: str) -> None:
        console.log(line)

    with progress:
        data = run_phases(config, notify=notify, on_sample=on_sample)
    report = build(data)
    json_path = write_json(report, config.out_dir / "report.json")
    chart_path = write_chart(report, config.out_dir / "chart.png")
    report["files"].update({"json": str(json_path), "chart": str(chart_path)})
    write_json(report, json_path)
    render(report, console)
    console.print(f"report: {json_path}  chart: {chart_path}")
    return report


def _default_out() -> Path:
    return Path("loadtest-results") / time.strftime("%Y%m%d-%H%M%S")


@app.command()
def run(
    scenario: Annotated[
        str, typer.Option(help="mixed | calculations | refresh | scheduling")
    ] = "mixed",
    rate: Annotated[float, typer.Option(help="target events/s (all producers together)")] = 20_000,
    duration: Annotated[float, typer.Option(help="seconds of load")] = 60,
    ramp: Annotated[float, typer.Option(help="seconds to ramp linearly from 0 to --rate")] = 5,
    burst_factor: Annotated[float, typer.Option(help="rate multiplier during bursts")] = 1.0,
    burst_every: Annotated[float, typer.Option(help="seconds between burst starts (0: none)")] = 0,
    burst_length: Annotated[float, typer.Option(help="seconds each burst lasts")] = 0,
    producers: Annotated[int, typer.Option(help="producer processes, each with a Tracker")] = 2,
    tenants: int = 20,
    customers: int = 200,
    resellers: int = 20,
    products: int = 5_000,
    pool: Annotated[int, typer.Option(help="event templates each producer replays")] = 50_000,
    seed: int = 7,
    partitions: Annotated[int, typer.Option(help="embedded: topic partitions")] = 8,
    aggregators: Annotated[int, typer.Option(help="embedded: aggregator processes")] = 2,
    flush_interval: Annotated[float, typer.Option(help="embedded: aggregator flush s")] = 1.0,
    aggregator_arg: Annotated[
        list[str] | None,
        typer.Option(help="embedded: extra aggregator flag (repeat), e.g. --no-group-flush"),
    ] = None,
    bootstrap: Annotated[str | None, typer.Option(help="external Kafka (no stack)")] = None,
    clickhouse_url: Annotated[str | None, typer.Option(help="external ClickHouse")] = None,
    clickhouse_user: str = "default",
    topic: str = EVENTS_TOPIC,
    group: Annotated[
        str, typer.Option(help="the aggregators' consumer group (lag)")
    ] = AGGREGATOR_GROUP,
    database: str = "tally",
    aggregator_pid: Annotated[
        list[int] | None, typer.Option(help="external: aggregator pids to sample (repeat)")
    ] = None,
    micro_calls: Annotated[int, typer.Option(help="track() calls per shape; 0 skips")] = 50_000,
    baselines: Annotated[bool, typer.Option(help="bare consume/decode/fold and naive")] = True,
    baseline_events: int = 2_000_000,
    naive_events: int = 1_000_000,
    catchup: Annotated[bool, typer.Option(help="one aggregator replays the topic")] = True,
    catchup_max: float = 180,
    timeline_keys: Annotated[int, typer.Option(help="keys seeded for the 30-day query")] = 1_000,
    query_runs: int = 10,
    probe_interval: float = 0.25,
    parts_period: Annotated[float, typer.Option(help="s between ClickHouse parts samples")] = 3,
    drain_timeout: float = 300,
    profile: Annotated[
        str, typer.Option(help="py-spy flame graph: none|aggregator|producer|clickhouse|catchup")
    ] = ("none"),
    out: Annotated[Path | None, typer.Option(help="results directory")] = None,
    keep_data: Annotated[bool, typer.Option(help="keep the embedded stack's data")] = False,
    quiet: Annotated[bool, typer.Option(help="no live progress bar")] = False,
) -> None:
    """Drive a load through the pipeline and report throughput, freshness, cost, exactness."""
    try:
        config = RunConfig(
            scenario=scenario, rate=rate, duration_s=duration, ramp_s=ramp,
            burst_factor=burst_factor, burst_every_s=burst_every, burst_length_s=burst_length,
            producers=producers, customers=customers, resellers=resellers, products=products,
            tenants=tenants, pool=pool, seed=seed, partitions=partitions,
            aggregators=aggregators, flush_interval_s=flush_interval,
            aggregator_args=tuple(aggregator_arg or ()), bootstrap=bootstrap,
            clickhouse_url=clickhouse_url, clickhouse_user=clickhouse_user, topic=topic,
            group=group, database=database, aggregator_pids=tuple(aggregator_pid or ()),
            micro_calls=micro_calls, baselines=baselines, baseline_events=baseline_events,
            naive_events=naive_events, catchup=catchup, catchup_max_s=catchup_max,
            timeline_keys=timeline_keys, query_runs=query_runs, probe_interval_s=probe_interval,
            parts_period_s=parts_period,
            drain_timeout_s=drain_timeout, profile=profile, out_dir=out or _default_out(),
            keep_data=keep_data,
        )  # fmt: skip
    except ValueError as exc:  # a bad scenario, rate profile or flag combination
        raise typer.BadParameter(str(exc)) from None
    report = execute(config, live=not quiet)
    if report["run"]["errors"] or not report["exactness"]["exact"]:
        raise typer.Exit(1)


@app.command()
def show(path: Path) -> None:
    """Print the tables of a saved report.json (and redraw its chart beside it)."""
    report = json.loads(path.read_text())
    render(report, Console())
    write_chart(report, path.with_name("chart.png"))


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
