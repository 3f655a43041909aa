"""Options shared by the read commands, and the settings they build (once, here)."""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from tally.cli.errors import bad_input
from tally.clickhouse.settings import CONNECTION, DATABASE
from tally.read import ReadSettings
from tally.schemas.settings_table import BadSetting
from tally.up.paths import default_data_dir
from tally.up.read_target import read_settings_from

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
    """Settings for the read commands (``up.read_target.read_settings_from``: the URL of the
    data dir's stack.json when none is given, the password from TALLY_CLICKHOUSE_PASSWORD, else
    the data dir's secret). A URL without scheme or host, or a database that is no identifier,
    exits 2 in one line."""
    password = os.environ.get(CONNECTION["clickhouse_password"].env or "")
    values = dict(clickhouse_url=url, clickhouse_user=user, database=database,
                  data_dir=data_dir, clickhouse_password=password)  # fmt: skip
    try:
        return read_settings_from(values)
    except BadSetting as exc:
        raise bad_input(exc.setting.flag, exc.message) from None


DEFAULT_DATA_DIR = default_data_dir()
R = TypeVar("R")


def command_group(name: str, help: str) -> typer.Typer:
    """A ``tally <name> ...`` group of commands (help without rich markup, no completion)."""
    return typer.Typer(
        name=name, help=help, no_args_is_help=True, add_completion=False, rich_markup_mode=None
    )


@dataclass(frozen=True)
class ClickHouseTarget:
    """A command's ClickHouse options, turned into settings when the command needs them."""

    url: str | None
    user: str
    database: str
    data_dir: Path

    def settings(self) -> ReadSettings:
        """The read settings (see :func:`read_settings`: bad input exits 2)."""
        return read_settings(self.url, self.user, self.database, self.data_dir)


_TARGET_OPTIONS = (
    ("clickhouse_url", ClickHouseUrl, DEFAULT_URL),
    ("clickhouse_user", ClickHouseUser, "default"),
    ("database", Database, "tally"),
    ("data_dir", DataDir, DEFAULT_DATA_DIR),
)


def clickhouse_options(command: Callable[..., R]) -> Callable[..., R]:
    """Give ``command`` --clickhouse-url, --clickhouse-user, --database and --data-dir in
    place of its ``target`` parameter, which receives them as one :class:`ClickHouseTarget`."""
    signature = inspect.signature(command, eval_str=True)
    params = list(signature.parameters.values())
    at = [p.name for p in params].index("target")
    options = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind)
        for name, kind, default in _TARGET_OPTIONS
    ]
    params[at : at + 1] = options
    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params]

    @functools.wraps(command)
    def with_target(**kwargs: Any) -> R:
        values = [kwargs.pop(name) for name, _, _ in _TARGET_OPTIONS]
        return command(**kwargs, target=ClickHouseTarget(*values))

    with_target.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    with_target.__annotations__ = {p.name: p.annotation for p in params}
    return with_target
