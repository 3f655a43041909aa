"""``tally clickhouse-users``: create the per-component users on a production ClickHouse."""

from __future__ import annotations

import os

import typer

from tally.cli.errors import bad_input
from tally.cli.options import ClickHouseUser, Database
from tally.clickhouse.settings import CONNECTION, ClickHouseSettings
from tally.schemas.access import access_model
from tally.up.clickhouse_users import UsersNotApplied, apply, passwords_from


def clickhouse_users(
    clickhouse_url: str = typer.Option(
        ...,
        "--clickhouse-url",
        envvar=CONNECTION["clickhouse_url"].env,
        help="ClickHouse HTTP(S) URL.",
    ),
    clickhouse_user: ClickHouseUser = "default",
    database: Database = "tally",
    clickhouse_cluster: str | None = typer.Option(
        None,
        "--clickhouse-cluster",
        envvar=CONNECTION["clickhouse_cluster"].env,
        help="Cluster of replicas: every statement runs ON CLUSTER (docs/cluster.md).",
    ),
) -> None:
    """Create (or bring back to the declaration) tally's ClickHouse users, profiles and grants,
    as an administrator (password: TALLY_CLICKHOUSE_PASSWORD); each user's password from
    TALLY_<COMPONENT>_CLICKHOUSE_PASSWORD (AGGREGATOR, TRACES, MONITORS, API, SQL)."""
    model = access_model(database)
    try:
        passwords = passwords_from(model, os.environ)
    except KeyError as exc:
        raise bad_input("passwords", f"set {exc.args[0]}") from None
    try:
        admin = ClickHouseSettings(
            url=clickhouse_url,
            user=clickhouse_user,
            password=os.environ.get(CONNECTION["clickhouse_password"].env or "", ""),
            cluster=clickhouse_cluster,
        )
    except ValueError as exc:
        raise bad_input("--clickhouse-url", str(exc)) from None
    try:
        count = apply(admin, model, passwords)
    except UsersNotApplied as exc:
        typer.echo(f"error: ClickHouse at {clickhouse_url}: {exc}", err=True)
        raise typer.Exit(1) from None
    names = ", ".join(u.name for u in model.users)
    print(f"{count} statements applied: users {names} on {model.database}")
