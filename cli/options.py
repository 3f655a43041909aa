"""Options shared by the read commands, and the settings they build (once, here)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from tally.cli.errors import bad_input
from tally.clickhouse.settings import CONNECTION, DATABASE, ClickHouseSettings
from tally.read import ReadSettings
from tally.up.paths import default_data_dir, stored_clickhouse_password
from tally.up.stack_file import clickhouse_url

ClickHouseUrl = Annotated[
    str | None,
    typer.Option(
        "--clickhouse-url",
        envvar=CONNECTION["clickhouse_url"].env,
        help="ClickHouse HTTP(S) URL. [default: the data dir's stack.json, else "
        "http://127.0.0.1:8123]",
        show_default=False,
    ),
]
ClickHouseUser = Annotated[
    str, typer.Option("--clickhouse-user", envvar=CONNECTION["clickhouse_user"].env, help="User.")
]
Database = Annotated[
    str, typer.Option("--database", envvar=DATABASE.env, help="Database of the rollups.")
]
DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar="TALLY_DATA_DIR",
        help="tally up's data directory; its ClickHouse password is used when "
        "TALLY_CLICKHOUSE_PASSWORD is not set.",
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

DEFAULT_URL = None  # resolved by read_settings: flag/env, stack.json, 127.0.0.1:8123


def read_settings(url: str | None, user: str, database: str, data_dir: Path) -> ReadSettings:
    """Settings for the read commands; the password only from env or the data dir's secret.
    No URL given: the one the data dir's stack.json records, else the default.
    A URL without scheme or host, or a database that is no identifier, exits 2 in one line."""
    url = clickhouse_url(url, data_dir)
    password = os.environ.get(CONNECTION["clickhouse_password"].env or "")
    if password is None:
        password = stored_clickhouse_password(data_dir) or ""
    try:
        clickhouse = ClickHouseSettings(url=url, user=user, password=password)
    except ValueError as exc:
        raise bad_input("--clickhouse-url", str(exc)) from None
    try:
        return ReadSettings(clickhouse=clickhouse, database=database)
    except ValueError as exc:
        raise bad_input("--database", str(exc)) from None


DEFAULT_DATA_DIR = default_data_dir()
