"""``tally api run|check`` (the HTTP API alone) and ``tally ui run|check`` (the API with the
dashboard), generated from one settings table: the API's rows, where ClickHouse is, and for
the dashboard its YAML directory. ``tally api`` / ``tally ui`` without a command run."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import typer

from tally.api.server import PortInUse, check_port, server
from tally.api.settings import DASHBOARDS, SETTINGS, ApiSettings, is_loopback
from tally.api.tokens import READ_FILE, stored_tokens, tokens
from tally.cli.sql_user import say_sql, sql_settings
from tally.read import ReadSettings
from tally.schemas import settings_cli
from tally.schemas.settings_cli import build_or_usage_error, service_app
from tally.schemas.settings_table import SettingsTable
from tally.up.paths import secret_path
from tally.up.read_target import READ_TARGET, read_settings_from

API = SETTINGS + READ_TARGET
UI = API + SettingsTable((DASHBOARDS,))


def _require_free_port(host: str, port: int) -> None:
    """Exit 2 with a hint when ``port`` is taken."""
    try:
        check_port(host, port)
    except PortInUse as exc:
        typer.echo(f"error: {exc}; pass --port with a free one", err=True)
        raise typer.Exit(2) from None


def _read(values: dict[str, Any]) -> ReadSettings:
    read = build_or_usage_error(read_settings_from, values)
    return replace(read, settle_s=values["settle"])


def api_settings(values: dict[str, Any]) -> ApiSettings:
    """The API's settings (tokens from the environment, else the data dir's, generated there on
    first use); says on stdout what ``/sql`` runs as."""
    read = _read(values)
    sql = sql_settings(read, values["sql_clickhouse_user"], values["sql_clickhouse_password_file"])
    read_token, sql_token = tokens(values["data_dir"])
    print(say_sql(sql), flush=True)
    return ApiSettings(read, read_token, sql_token, values["host"], values["port"], sql=sql)


def report_dashboard_errors(directory: Path | None) -> int:
    """Print the dashboard files that do not load (they are listed on /ui/ as well); their
    number."""
    from tally.web.loader import load_all

    errors = load_all(directory).errors
    for error in errors:
        typer.echo(f"dashboard error: {error}", err=True)
    return len(errors)


def _dashboards(values: dict[str, Any]) -> Path | None:
    directory = values["dashboards"]
    return directory.expanduser().resolve() if directory else None


def run_api(values: dict[str, Any]) -> None:
    """Serve only the HTTP API over an existing ClickHouse (/sql needs --sql-clickhouse-user,
    else it answers 503)."""
    _require_free_port(values["host"], values["port"])
    settings = api_settings(values)
    print(
        f"tally API on http://{settings.host}:{settings.port}/api/v1 "
        f"(tokens in {values['data_dir'] / 'secrets'})"
    )
    server(settings).run()


def run_ui(values: dict[str, Any]) -> None:
    """Serve the dashboard and the HTTP API over an existing, e.g. production, ClickHouse."""
    from tally.web import WebSettings, web_handlers
    from tally.web.traces_pages import TRACE_PAGES

    host, port, data_dir = values["host"], values["port"], values["data_dir"]
    _require_free_port(host, port)
    directory = _dashboards(values)
    if not is_loopback(host):
        typer.echo(
            f"warning: serving on {host} over plain HTTP: put TLS in front (the sign-in token "
            "and the session cookie travel with every request)",
            err=True,
        )
    report_dashboard_errors(directory)
    settings = api_settings(values)
    token_file = secret_path(data_dir, READ_FILE)
    print(
        f"tally dashboard on http://{host}:{port}/ui/ over {settings.read.clickhouse.url} "
        f"(sign in with the read token: TALLY_API_TOKEN or {token_file})",
        flush=True,
    )
    server(settings, [*web_handlers(WebSettings(directory)), *TRACE_PAGES]).run()


def token_problems(host: str, data_dir: Path) -> list[str]:
    """What is wrong with the tokens ``run`` would use: none given beyond 127.0.0.1 (``run``
    would generate tokens nobody else knows), or tokens ``ApiSettings`` refuses."""
    read, sql = stored_tokens(data_dir, os.environ)
    if read is None or sql is None:
        if is_loopback(host):
            return []  # run generates them into the data dir
        return [
            f"--host {host} is beyond 127.0.0.1: set TALLY_API_TOKEN and TALLY_API_SQL_TOKEN "
            f"(or keep them in {data_dir / 'secrets'})"
        ]
    try:
        ApiSettings(read_token=read, sql_token=sql)
    except ValueError as exc:
        return [str(exc)]
    return []


def _check(values: dict[str, Any], dashboards: bool) -> None:
    """The settings (a bad one exits 2), the tokens and, for the dashboard, its YAML files
    (problems exit 1); nothing is started or reached."""
    read = _read(values)
    sql = sql_settings(read, values["sql_clickhouse_user"], values["sql_clickhouse_password_file"])
    problems = token_problems(values["host"], values["data_dir"])
    for problem in problems:
        typer.echo(f"error: {problem}", err=True)
    if not is_loopback(values["host"]) and not read.clickhouse.password:
        typer.echo("warning: no ClickHouse password (TALLY_CLICKHOUSE_PASSWORD)", err=True)
    broken = report_dashboard_errors(_dashboards(values)) if dashboards else 0
    if problems or broken:
        raise typer.Exit(1)
    typer.echo(
        f"ok: http://{values['host']}:{values['port']} over {read.clickhouse.url} "
        f"(user {read.clickhouse.user}, database {read.database}); {say_sql(sql)}"
    )


CHECK_HELP = "Check the settings and the tokens (required beyond 127.0.0.1), then exit; "
api_app = service_app(
    API, "The HTTP API (/api/v1) alone, over an existing ClickHouse.", run_api,
    lambda values: _check(values, dashboards=False), CHECK_HELP + "nothing is started.",
)  # fmt: skip
ui_app = service_app(
    UI, "The dashboard (/ui/) and the HTTP API over an existing, e.g. production, ClickHouse.",
    run_ui, lambda values: _check(values, dashboards=True),
    CHECK_HELP + "also the dashboard YAML files; nothing is started.",
)  # fmt: skip


def api(ctx: typer.Context) -> None:
    """Only the HTTP API over an existing ClickHouse: `tally api [run|check] [flags]`
    (`tally api run --help`)."""
    _main(api_app, "tally api", ctx.args)


def ui(ctx: typer.Context) -> None:
    """The dashboard and the HTTP API over an existing ClickHouse: `tally ui [run|check]
    [flags]` (`tally ui run --help`)."""
    _main(ui_app, "tally ui", ctx.args)


def _main(app: typer.Typer, prog: str, args: list[str]) -> None:
    """``run`` unless ``check`` is named; ``--help`` alone lists the two."""
    if args in (["--help"], ["-h"]):
        app(args=args, prog_name=prog)
    settings_cli.main(app, prog, args)
