"""``--sql-clickhouse-user``: the SQL endpoint's own ClickHouse user for ``tally api`` / ``ui``.

The password comes from ``TALLY_SQL_CLICKHOUSE_PASSWORD`` or ``--sql-clickhouse-password-file``,
never from a flag's value. Without a user ``/sql`` answers 503 (``api.sql.UNCONFIGURED``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from tally.api.settings import SQL_PASSWORD_ENV
from tally.api.sql import SqlSettings
from tally.cli.errors import bad_input
from tally.read import ReadSettings

PASSWORD_ENV = SQL_PASSWORD_ENV


def sql_settings(
    read: ReadSettings,
    user: str | None,
    password_file: Path | None,
    env: Mapping[str, str] | None = None,
) -> SqlSettings | None:
    """The SQL endpoint's settings: ``read``'s ClickHouse as ``user``; ``None`` without a user.

    A password without a user, a user without a password or an unreadable file exits 2.
    """
    env = os.environ if env is None else env
    password = env.get(PASSWORD_ENV)
    if password_file is not None:
        try:
            password = password_file.read_text().strip()
        except OSError as exc:
            raise bad_input("--sql-clickhouse-password-file", str(exc)) from None
    if not user:
        if password is not None:
            raise bad_input("--sql-clickhouse-user", "a SQL user's password is set but no user")
        return None
    if not password:
        raise bad_input(
            "--sql-clickhouse-user",
            f"{user} needs its password in {PASSWORD_ENV} or --sql-clickhouse-password-file",
        )
    clickhouse = replace(read.clickhouse, user=user, password=password)
    return SqlSettings(replace(read, clickhouse=clickhouse))


def say_sql(settings: SqlSettings | None) -> str:
    """One line on what ``/sql`` runs as."""
    if settings is None:
        return (
            "note: /api/v1/sql answers 503: no --sql-clickhouse-user (the read user could "
            "lift limits sent with the query)"
        )
    return f"/api/v1/sql runs as ClickHouse user {settings.read.clickhouse.user}"
