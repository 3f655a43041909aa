"""Settings of the HTTP API, declared once (one row per setting: ``tally api|ui run|check``) and
built once at the entry point."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tally.api.sql import SqlSettings
from tally.read.settings import DEFAULT_SETTLE_S, ReadSettings
from tally.schemas.settings_table import (
    Setting,
    SettingsTable,
    optional_text,
    positive_float,
    text,
)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8700
LOOPBACK = ("127.0.0.1", "localhost", "::1")
SQL_PASSWORD_ENV = "TALLY_SQL_CLICKHOUSE_PASSWORD"


def optional_path(value: str) -> Path | None:
    """A path, or None when empty."""
    return Path(value) if value else None


def port(value: str) -> int:
    """A TCP port, 0-65535."""
    number = int(value)
    if not 0 <= number <= 65535:
        raise ValueError(f"{number} is not a port (0-65535)")
    return number


# The API's own rows; ``up.read_target.READ_TARGET`` adds where ClickHouse is.
SETTINGS = SettingsTable(
    (
        Setting("host", text, DEFAULT_HOST, "--host", "TALLY_API_HOST",
                "address to bind; beyond 127.0.0.1 put TLS in front and give the tokens"
                " (TALLY_API_TOKEN, TALLY_API_SQL_TOKEN)"),
        Setting("port", port, DEFAULT_PORT, "--port", "TALLY_API_PORT", "port to listen on"),
        Setting("sql_clickhouse_user", optional_text, None, "--sql-clickhouse-user",
                "TALLY_SQL_CLICKHOUSE_USER",
                "ClickHouse user of POST /api/v1/sql (tally_sql: its settings profile holds the"
                f" limits); password in {SQL_PASSWORD_ENV} or --sql-clickhouse-password-file;"
                " none: /sql answers 503"),
        Setting("sql_clickhouse_password_file", optional_path, None,
                "--sql-clickhouse-password-file", "TALLY_SQL_CLICKHOUSE_PASSWORD_FILE",
                f"file holding the SQL user's password (instead of {SQL_PASSWORD_ENV})"),
        Setting("settle", positive_float, DEFAULT_SETTLE_S, "--settle", "TALLY_API_SETTLE_S",
                "seconds before now a page's reads stop (its 'as of' time): more than the"
                " aggregators' flush interval (as paced) plus the clients' linger"),
    )
)  # fmt: skip
DASHBOARDS = Setting(
    "dashboards", optional_path, None, "--dashboards", "TALLY_DASHBOARDS_DIR",
    "directory of dashboard YAML files, loaded at start (besides the built-ins)",
)  # fmt: skip


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    return host in LOOPBACK


@dataclass(frozen=True)
class ApiSettings:
    """Where to listen and which tokens open what.

    ``read_token`` opens keys, paths, values and series; ``sql_token`` also opens ``/sql``.
    Both are required: the API never serves without a token. ``sql``: the SQL endpoint's own
    ClickHouse user; without it ``/sql`` answers 503 (never ``read``'s user, which could lift
    limits sent with the query).
    """

    read: ReadSettings = field(default_factory=ReadSettings)
    read_token: str = field(default="", repr=False)
    sql_token: str = field(default="", repr=False)
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    monitor_paths: tuple[Path, ...] = ()  # monitor files listed by /api/v1/monitors
    sql: SqlSettings | None = None

    def __post_init__(self) -> None:
        if len(self.read_token) < 16 or len(self.sql_token) < 16:
            raise ValueError("the API needs a read token and an SQL token of 16+ characters")
        if self.read_token == self.sql_token:
            raise ValueError("the read token and the SQL token must differ")
