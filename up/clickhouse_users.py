"""Create tally's per-component ClickHouse users on a server, from the one declaration.

``tally clickhouse-users`` (compose's one-shot ``clickhouse-users`` service) connects as an
administrator and runs :func:`tally.schemas.access.production_ddl` with each user's password
from ``TALLY_<COMPONENT>_CLICKHOUSE_PASSWORD``. Every statement is ``OR REPLACE`` or a
``GRANT``, so running it again brings the server back to the declaration. Passwords reach the
server only as quoted string literals in the statement body (never in a URL or a log line).
"""

from __future__ import annotations

from collections.abc import Mapping

from clickhouse_connect.driver.exceptions import ClickHouseError

from tally.clickhouse.settings import ClickHouseSettings
from tally.read import ReadSettings
from tally.read.connection import connect_sync
from tally.schemas.access import AccessModel, production_ddl
from tally.schemas.placement import SINGLE_SERVER, Placement


class UsersNotApplied(Exception):
    """A statement the server refused (its text without the password) and why."""


def password_env(component: str) -> str:
    """The variable holding ``component``'s password: ``TALLY_SQL_CLICKHOUSE_PASSWORD``."""
    return f"TALLY_{component.upper()}_CLICKHOUSE_PASSWORD"


def passwords_from(model: AccessModel, env: Mapping[str, str]) -> dict[str, str]:
    """Each user's password from ``env``; :class:`KeyError` naming every missing variable."""
    names = {u.name: password_env(u.component) for u in model.users}
    missing = [name for name in names.values() if not env.get(name)]
    if missing:
        raise KeyError(", ".join(missing))
    return {user: env[name] for user, name in names.items()}


def statements(
    model: AccessModel, passwords: Mapping[str, str], placement: Placement = SINGLE_SERVER
) -> list[str]:
    """What :func:`apply` runs: exactly the production DDL with these passwords (``ON
    CLUSTER`` when ``placement`` names one)."""
    return production_ddl(model, passwords, placement)


def apply(admin: ClickHouseSettings, model: AccessModel, passwords: Mapping[str, str]) -> int:
    """Run :func:`statements` as ``admin``, in order; the number run.

    Stops at the first refusal with :class:`UsersNotApplied` (no password in its message).
    """
    secrets = [*passwords.values(), admin.password]
    try:
        client = connect_sync(ReadSettings(clickhouse=admin))
    except ClickHouseError as exc:
        reason = _scrub(str(exc), secrets)
        raise UsersNotApplied(f"login as {admin.user} failed: {reason}") from None
    try:
        todo = statements(model, passwords, admin.placement)
        for statement in todo:
            try:
                client.command(statement)
            except ClickHouseError as exc:
                reason = _scrub(str(exc), secrets)
                raise UsersNotApplied(f"refused {redacted(statement)}: {reason}") from None
        return len(todo)
    finally:
        client.close()


def redacted(statement: str) -> str:
    """``statement`` without its password."""
    head, sep, _ = statement.partition(" IDENTIFIED ")
    return f"{head} IDENTIFIED ..." if sep else statement


def _scrub(message: str, secrets: list[str]) -> str:
    """The first line of ``message``, no secret in it."""
    first = message.strip().splitlines()[0] if message.strip() else "no reason given"
    for secret in filter(None, secrets):
        first = first.replace(secret, "***")
    return first
