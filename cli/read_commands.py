"""``tally series``, ``tally keys``, ``tally paths``, ``tally sql``: the read API in a terminal."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, TypeVar

import typer
from rich.console import Console

from tally.cli.errors import print_json, run_read
from tally.cli.options import (
    ClickHouseTarget,
    Json,
    clickhouse_options,
)
from tally.read import KeyInfo, PathInfo, Reader
from tally.read.render import buckets_table, cell, data_table, plain, series_table

T = TypeVar("T")
WIDE = 1_000_000  # --wide: a console this wide never cuts; the table keeps its own width


@contextmanager
def _reader(target: ClickHouseTarget) -> Iterator[Reader]:
    with Reader(target.settings()) as reader:
        yield reader


def _run(call: Callable[[], T], reader: Reader) -> T:
    """A read against the reader's ClickHouse (see ``errors.run_read``)."""
    return run_read(call, f"ClickHouse at {reader.settings.clickhouse.url}")


def _print_seen(found: Sequence[KeyInfo | PathInfo], name: str, title: str, json: bool) -> None:
    """Keys or paths (``name``) with their last write, as JSON or a table."""
    if json:
        print_json(found)
        return
    table = data_table((name, "last seen (UTC)"), title)
    for item in found:
        table.add_row(plain(getattr(item, name)), item.last_seen.strftime("%Y-%m-%d %H:%M"))
    Console().print(table)


@clickhouse_options
def series(
    key: Annotated[str, typer.Argument(help="Metric key, e.g. calc or calc::tenant::42.")],
    path: Annotated[
        list[str] | None,
        typer.Option(
            "--path", "-p", help="Path or wildcard (codes.*); repeatable. [default: count]"
        ),
    ] = None,
    expression: Annotated[
        list[str] | None,
        typer.Option(
            "--expression", "-e", help="Expression over paths, e.g. 'success / count'; repeatable."
        ),
    ] = None,
    granularity: Annotated[str, typer.Option("--granularity", "-g", help="Bucket size.")] = "1h",
    since: Annotated[
        str, typer.Option(help="Start: duration ago (24h), ISO time or unix s.")
    ] = "24h",
    until: Annotated[str, typer.Option(help="End (exclusive): 'now', ISO time or unix s.")] = "now",
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Count only what happened before this time: 'settled' (a minute every event"
            " before it has reached), ISO time or unix s; the last bucket holds its part before"
            " it. [default: everything written so far]",
        ),
    ] = None,
    top: Annotated[
        int | None,
        typer.Option(help="Keep the N largest matches per wildcard, + other. [default: all]"),
    ] = None,
    buckets: Annotated[
        bool, typer.Option("--buckets", help="Also print one line per bucket.")
    ] = False,
    json: Json = False,
    *,
    target: ClickHouseTarget,
) -> None:
    """Print a series as a table with sparklines (or JSON)."""
    paths = path if path or expression else ["count"]
    with _reader(target) as reader:
        s = _run(
            lambda: reader.series(
                key, paths or [], expression or [], since, until, granularity, top, as_of
            ),
            reader,
        )
    if json:
        print_json(s)
        return
    console = Console()
    console.print(series_table(s))
    if buckets:
        console.print(buckets_table(s))


@clickhouse_options
def keys(
    pattern: Annotated[
        str, typer.Argument(help="'*' matches any run, e.g. 'event::schedule::*'.")
    ] = "*",
    since: Annotated[
        str, typer.Option(help="Only keys written since (duration ago or ISO).")
    ] = "7d",
    until: Annotated[str, typer.Option(help="... and before this time.")] = "now",
    limit: Annotated[
        int, typer.Option(help="At most this many keys, newest activity first.")
    ] = 1000,
    json: Json = False,
    *,
    target: ClickHouseTarget,
) -> None:
    """List keys matching a pattern with activity in a range, with their last write."""
    with _reader(target) as reader:
        found = _run(lambda: reader.keys(pattern, since, until, limit), reader)
    _print_seen(found, "key", f"{len(found)} keys matching {pattern!r}", json)


@clickhouse_options
def paths(
    key: Annotated[str, typer.Argument(help="Metric key.")],
    json: Json = False,
    *,
    target: ClickHouseTarget,
) -> None:
    """List the paths of a key, with their last write."""
    with _reader(target) as reader:
        found = _run(lambda: reader.paths(key), reader)
    _print_seen(found, "path", f"paths of {key!r}", json)


@clickhouse_options
def sql(
    query: Annotated[str, typer.Argument(help="SQL; bind values as {name:Type} with --param.")],
    param: Annotated[
        list[str] | None, typer.Option("--param", help="name=value for {name:Type}; repeatable.")
    ] = None,
    json: Json = False,
    wide: Annotated[
        bool, typer.Option("--wide", help="Print every value whole, however wide the table.")
    ] = False,
    *,
    target: ClickHouseTarget,
) -> None:
    """Run read-only SQL (writes are refused) and print the rows (cut to the terminal's width
    unless --wide or --json)."""
    parameters = {}
    for item in param or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            typer.echo(f"error: --param {item!r} is not name=value", err=True)
            raise typer.Exit(2)
        parameters[name] = value
    with _reader(target) as reader:
        result = _run(lambda: reader.sql(query, parameters), reader)
    if json:
        print_json(result)
        return
    table = data_table(result.columns)
    for row in result.rows:
        table.add_row(*(cell(v) for v in row))
    console = Console(width=WIDE, soft_wrap=True) if wide else Console()
    console.print(table)
