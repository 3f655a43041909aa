"""``tally up``: the local service."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from tally.api.server import PortInUse
from tally.api.settings import DEFAULT_HOST, DEFAULT_PORT
from tally.api.tokens import READ_FILE, SQL_FILE
from tally.cli.api import report_dashboard_errors
from tally.cli.errors import bad_input
from tally.cli.options import (
    DEFAULT_DATA_DIR,
    ClickHouseUser,
    Database,
    DataDir,
)
from tally.clickhouse.settings import BadClickHouseUrl, clickhouse_endpoint
from tally.up.paths import secret_path
from tally.up.service import Service, UpSettings

ApiHost = Annotated[
    str, typer.Option("--api-host", envvar="TALLY_API_HOST", help="Address the API binds to.")
]
Dashboards = Annotated[
    Path | None,
    typer.Option(
        "--dashboards",
        envvar="TALLY_DASHBOARDS_DIR",
        help="Directory of dashboard YAML files, loaded at start (besides the built-ins).",
    ),
]
ApiPort = Annotated[
    int, typer.Option("--api-port", envvar="TALLY_API_PORT", help="Port of the API/dashboard.")
]


def banner(service: Service, data_dir: Path) -> str:
    """What runs where and what to try."""
    token = secret_path(data_dir, READ_FILE)
    lines = [
        f"tally is up (data in {data_dir})",
        f"  Kafka       {service.bootstrap}",
        f"  ClickHouse  {service.clickhouse_url}  (user {service.settings.clickhouse_user}, "
        f"password in {secret_path(data_dir, 'clickhouse-password')})",
    ]
    if service.api is not None:
        lines += [
            f"  API         {service.api_url}/api/v1  (OpenAPI: {service.api_url}/api/v1/schema)",
            f"  dashboard   {service.api_url}/ui/  (sign in with the read token)",
            f"  read token  {token}   SQL token {secret_path(data_dir, SQL_FILE)}",
            f'  try: curl -H "Authorization: Bearer $(cat {token})" '
            f"'{service.api_url}/api/v1/keys'",
        ]
    if service.settings.monitors_dir is not None:
        lines.append(
            f"  monitors    {service.settings.monitors_dir}/*.yaml  "
            f"(log {data_dir / 'logs' / 'monitors.log'}; tally monitors list DIR --state)"
        )
    lines += [
        "  try: tally keys",
        "       tally series calc -p count -p 'codes.*' -e 'success / count' --since 24h",
        "Ctrl-C stops everything cleanly.",
    ]
    return "\n".join(lines)


def up(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    kafka_port: Annotated[
        int, typer.Option(envvar="TALLY_KAFKA_PORT", help="Port of the local Kafka broker.")
    ] = 9092,
    kafka_brokers: Annotated[
        int,
        typer.Option(
            min=1,
            max=9,
            help="Local Kafka brokers: more than 1 runs a KRaft cluster on --kafka-port and the "
            "ports after it, topics replicated 3 times with min.insync.replicas=2.",
        ),
    ] = 1,
    clickhouse_port: Annotated[
        int,
        typer.Option(envvar="TALLY_CLICKHOUSE_PORT", help="Port of the local ClickHouse (HTTP)."),
    ] = 8123,
    api_host: ApiHost = DEFAULT_HOST,
    api_port: ApiPort = DEFAULT_PORT,
    aggregators: Annotated[int, typer.Option(min=0, help="Aggregator processes to run.")] = 2,
    trace_writers: Annotated[
        int, typer.Option(min=0, help="Trace writer processes to run (tally.traces topic).")
    ] = 1,
    partitions: Annotated[int, typer.Option(min=1, help="Partitions of the events topic.")] = 8,
    time_zone: Annotated[
        str, typer.Option(envvar="TALLY_TIME_ZONE", help="Zone of day/week/month buckets.")
    ] = "UTC",
    week_start: Annotated[
        str, typer.Option(envvar="TALLY_WEEK_START", help="First day of a week.")
    ] = "monday",
    kafka_bootstrap: Annotated[
        str | None, typer.Option(help="Use this external Kafka, not a local one. [default: local]")
    ] = None,
    clickhouse_url: Annotated[
        str | None,
        typer.Option(
            help="Use this external ClickHouse instead of starting one "
            "(password from TALLY_CLICKHOUSE_PASSWORD). [default: local]"
        ),
    ] = None,
    clickhouse_user: ClickHouseUser = "default",
    database: Database = "tally",
    api: Annotated[bool, typer.Option(help="Serve the HTTP API/dashboard.")] = True,
    monitors: Annotated[
        Path | None,
        typer.Option(
            help="Directory of monitor files (*.yaml) for the monitor service. "
            "[default: <data-dir>/monitors]"
        ),
    ] = None,
    dashboards: Dashboards = None,
) -> None:
    """Run Kafka, ClickHouse, aggregators and the HTTP API until Ctrl-C; data persists."""
    if clickhouse_url is not None:
        try:
            clickhouse_endpoint(clickhouse_url)
        except BadClickHouseUrl as exc:
            raise bad_input("--clickhouse-url", str(exc)) from None
    settings = UpSettings(
        data_dir=data_dir.expanduser().resolve(), kafka_port=kafka_port,
        clickhouse_port=clickhouse_port, api_host=api_host, api_port=api_port,
        aggregators=aggregators, partitions=partitions, time_zone=time_zone,
        week_start=week_start, database=database, kafka_bootstrap=kafka_bootstrap,
        clickhouse_url=clickhouse_url, clickhouse_user=clickhouse_user,
        external_clickhouse_password=os.environ.get("TALLY_CLICKHOUSE_PASSWORD", ""), api=api,
        monitors_dir=(monitors or data_dir / "monitors").expanduser().resolve(),
        dashboards_dir=dashboards.expanduser().resolve() if dashboards else None,
        trace_writers=trace_writers, kafka_brokers=kafka_brokers,
    )  # fmt: skip
    if api:
        report_dashboard_errors(settings.dashboards_dir)
    run_service(settings)


def run_service(settings: UpSettings) -> None:
    """Start, print the banner, keep a status line and supervise until SIGINT/SIGTERM."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())  # the loop below stops everything
    service = Service(settings)
    try:
        service.start(say=lambda text: print(text, flush=True))
    except PortInUse as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        print(banner(service, settings.data_dir), flush=True)
        tty = sys.stdout.isatty()
        ticks = 0
        while not stop.wait(1.0):
            for index in service.supervise():
                print(
                    f"\naggregator {index} exited; restarted (log in {settings.data_dir / 'logs'})"
                )
            ticks += 1
            if tty:
                print(f"\r{service.status()}   ", end="", flush=True)
            elif ticks % 60 == 0:
                print(service.status(), flush=True)
    finally:
        print("\nstopping (aggregators flush and commit first) ...", flush=True)
        service.stop()
        print("stopped cleanly", flush=True)
