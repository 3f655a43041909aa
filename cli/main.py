"""``tally``: one command for the local service, the aggregator and the read side.

\b
tally up                          # Kafka, ClickHouse, aggregators, API and dashboard (/ui/)
tally ui --clickhouse-url https://ch.example:8443   # the dashboard over a production ClickHouse
tally series calc -p count -p 'codes.*' -e 'success / count' --since 7d -g 1d
tally keys 'event::schedule::*'
tally sql "SELECT key, sum(value) FROM tally.rollups_1d GROUP BY key"
tally monitors run monitors/        # alert on the rollups (test FILE --since 7d, list)
tally traces list event::job --state failure    tally traces show <id>    tally traces log
tally aggregator|trace-writer|sampler|monitors|api|ui run|check ...
tally loadtest ...   tally demo
tally clickhouse-users              # production: one ClickHouse user per component
"""

from __future__ import annotations

import typer

from tally.aggregator.cli import app as aggregator_app
from tally.cli import monitors, passthrough, read_commands
from tally.cli.api import api, ui
from tally.cli.clickhouse_users import clickhouse_users
from tally.cli.traces_commands import app as traces_app
from tally.cli.up import up
from tally.traces.service import app as trace_writer_app

app = typer.Typer(
    name="tally",
    help=__doc__,
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command()(up)
app.command(context_settings=passthrough.PASS, add_help_option=False)(api)
app.command(context_settings=passthrough.PASS, add_help_option=False)(ui)
app.command()(read_commands.series)
app.command()(read_commands.keys)
app.command()(read_commands.paths)
app.command()(read_commands.sql)
app.add_typer(monitors.app, name="monitors")
app.add_typer(
    aggregator_app,
    name="aggregator",
    help="One aggregator: Kafka events -> ClickHouse rollups, exactly once.",
)
app.add_typer(
    trace_writer_app,
    name="trace-writer",
    help="One trace writer: tally.traces -> ClickHouse, exactly once.",
)
app.command(context_settings=passthrough.PASS, add_help_option=False)(passthrough.loadtest)
app.command(context_settings=passthrough.PASS, add_help_option=False)(passthrough.demo)
app.command(context_settings=passthrough.PASS, add_help_option=False)(passthrough.sampler)
app.add_typer(traces_app, name="traces")
app.command(name="clickhouse-users")(clickhouse_users)


def main() -> None:
    """Console-script entry point."""
    app()
