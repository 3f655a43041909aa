"""How the read-side commands end: bad input exits 2 with its reason, a failed ClickHouse 1."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

import msgspec
import typer

from tally.read import ReadError

T = TypeVar("T")


def bad_input(exc: ReadError) -> typer.Exit:
    """Print ``error: <field>: <reason>``; the exit (code 2) for the caller to raise."""
    typer.echo(f"error: {exc.field}: {exc.reason}", err=True)
    return typer.Exit(2)


def unreachable(where: str, exc: Exception) -> typer.Exit:
    """Print ``error: <where>: <first line>``; the exit (code 1) for the caller to raise."""
    text = str(exc).strip()
    message = text.splitlines()[0] if text else type(exc).__name__
    typer.echo(f"error: {where}: {message}", err=True)
    return typer.Exit(1)


def run_read(call: Callable[[], T], where: str) -> T:
    """Run a read; bad input exits 2 with the reason, anything else from ``where`` exits 1."""
    try:
        return call()
    except ReadError as exc:
        raise bad_input(exc) from None
    except Exception as exc:  # clickhouse-connect wraps transport and server errors alike
        raise unreachable(where, exc) from None


def print_json(value: object) -> None:
    """One JSON document on stdout."""
    sys.stdout.buffer.write(msgspec.json.encode(value) + b"\n")
