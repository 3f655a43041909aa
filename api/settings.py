"""Settings of the HTTP API, built once at the entry point."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tally.api.sql import SqlSettings
from tally.read.settings import ReadSettings

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8700


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
