"""A service's command line, generated with Typer from its :class:`SettingsTable`.

Every service has the same shape: ``run`` (serve until SIGTERM/SIGINT) and ``check`` (reach
what it needs, then exit), each with one option per setting row. The module entry points
(``python -m tally.aggregator``) and ``tally <service>`` mount the same Typer app. An option
left out falls back to its ``TALLY_*`` variable, then to its default (``SettingsTable.resolve``).
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, TypeVar

import click
import typer

from tally.schemas.settings_table import METAVARS, BadSetting, Setting, SettingsTable

COMMANDS = ("run", "check")
T = TypeVar("T")


def _metavar(row: Setting) -> str | None:
    if row.is_switch:
        return None
    if row.choices:
        return f"[{'|'.join(row.choices)}]"
    return METAVARS.get(row.type, "TEXT")


def _parameters(table: SettingsTable) -> list[inspect.Parameter]:
    """One keyword parameter per option row: ``None`` (or ``False``) means "not given"."""
    out = []
    for row in table.options:
        option: Any = typer.Option(
            row.flag, help=row.described(), show_default=False, metavar=_metavar(row),
            hidden=row.hidden,
        )  # fmt: skip
        kind: Any = bool if row.is_switch else list[str] | None if row.repeat else str | None
        default: Any = False if row.is_switch else None
        if row.positional:  # required unless the row has a default or a variable
            option = typer.Argument(help=row.described(), metavar=row.flag, show_default=False)
            required = row.default is None and row.env is None
            kind = list[str] if required else list[str] | None
            default = inspect.Parameter.empty if required else None
        annotation: Any = Annotated[kind, option]
        out.append(inspect.Parameter(row.field, inspect.Parameter.KEYWORD_ONLY, default=default,
                                     annotation=annotation))  # fmt: skip
    return out


def _usage_error(exc: BadSetting) -> SystemExit:
    """Print ``Error: Invalid value for '--flag': ...`` (with the usage line) and exit 2."""
    hint = exc.setting.flag or exc.setting.env
    error = click.BadParameter(exc.message, ctx=click.get_current_context(silent=True),
                               param_hint=f"'{hint}'")  # fmt: skip
    error.show()
    return SystemExit(error.exit_code)


def typer_command(table: SettingsTable, body: Callable[[dict[str, Any]], None]) -> Callable:
    """A function Typer turns into a command with ``table``'s options; it calls ``body`` with
    the resolved values (flag, else environment, else default). A :class:`BadSetting` raised
    while resolving or building settings is a usage error of its flag (exit 2)."""

    def command(**given: Any) -> None:
        try:
            values = table.resolve(given, os.environ)
        except BadSetting as exc:
            raise _usage_error(exc) from None
        body(values)

    command.__signature__ = inspect.Signature(_parameters(table))  # type: ignore[attr-defined]
    return command


def parse(
    table: SettingsTable,
    argv: Sequence[str],
    prog: str,
    env: Mapping[str, str],
    build: Callable[[dict[str, Any]], T],
) -> T:
    """``build`` of ``argv`` parsed as ``table``'s options and resolved against ``env``;
    ``--help`` prints and exits 0, a bad value prints one usage error and exits 2."""
    app = typer.Typer(add_completion=False, rich_markup_mode=None)
    app.command(name=prog)(typer_command(table, lambda values: None))
    command = typer.main.get_command(app)
    try:
        with command.make_context(prog, list(argv)) as ctx:
            try:
                return build(table.resolve(ctx.params, env))
            except BadSetting as exc:
                raise _usage_error(exc) from None
    except click.exceptions.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None


def build_or_usage_error(build: Callable[[dict[str, Any]], T], values: dict[str, Any]) -> T:
    """``build(values)``, a :class:`BadSetting` turned into a usage error of its flag."""
    try:
        return build(values)
    except BadSetting as exc:
        raise _usage_error(exc) from None


def service_app(
    table: SettingsTable,
    help: str,
    run: Callable[[dict[str, Any]], None],
    check: Callable[[dict[str, Any]], None],
    check_help: str = "Reach Kafka and ClickHouse (applying the DDL), then exit.",
) -> typer.Typer:
    """``run`` and ``check`` over the same options."""
    app = typer.Typer(
        help=help,
        add_completion=False,
        no_args_is_help=True,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.command("run", help="Serve until SIGTERM/SIGINT, then finish what it holds and exit 0.")(
        typer_command(table, run)
    )
    app.command("check", help=check_help)(typer_command(table, check))
    return app


def main(app: typer.Typer, prog: str, argv: Sequence[str] | None = None) -> None:
    """A module entry point: ``run`` when no command is named (``python -m tally.aggregator
    --flush-interval 1`` runs, ``--help`` shows ``run``'s options)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        args.insert(0, "run")
    app(args=args, prog_name=prog)
