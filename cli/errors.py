"""How the read-side commands end: bad input exits 2 with one line saying why, a ClickHouse that
cannot be reached or fails on its own 1.

Bad input is the read module's :class:`ReadError`, a ValueError/OverflowError from turning the
request into a query (a time range past what datetimes hold), or a ClickHouse error that blames
the query (a user's SQL syntax error, a parameter out of a type's range)."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import TypeVar

import msgspec
import typer
from clickhouse_connect.driver.exceptions import Error as ClickHouseError

from tally.read import ReadError

T = TypeVar("T")

# ClickHouse error codes that mean "the query is wrong", not "the server is": exit 2.
QUERY_ERRORS = frozenset({
    6,  # CANNOT_PARSE_TEXT
    27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
    35,  # TOO_FEW_ARGUMENTS_FOR_FUNCTION
    36,  # BAD_ARGUMENTS
    38,  # CANNOT_PARSE_DATE
    41,  # CANNOT_PARSE_DATETIME
    42,  # NUMBER_OF_ARGUMENTS_DOESNT_MATCH
    43,  # ILLEGAL_TYPE_OF_ARGUMENT
    44,  # ILLEGAL_COLUMN
    46,  # UNKNOWN_FUNCTION
    47,  # UNKNOWN_IDENTIFIER
    53,  # TYPE_MISMATCH
    60,  # UNKNOWN_TABLE
    62,  # SYNTAX_ERROR
    63,  # UNKNOWN_AGGREGATE_FUNCTION
    69,  # ARGUMENT_OUT_OF_BOUND
    70,  # CANNOT_CONVERT_TYPE
    72,  # CANNOT_PARSE_NUMBER
    81,  # UNKNOWN_DATABASE
    153,  # ILLEGAL_DIVISION
    164,  # READONLY
    179,  # MULTIPLE_EXPRESSIONS_FOR_ALIAS
    184,  # ILLEGAL_AGGREGATION
    215,  # NOT_AN_AGGREGATE
    321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    352,  # AMBIGUOUS_COLUMN_NAME
    386,  # NO_COMMON_TYPE
    407,  # DECIMAL_OVERFLOW
    456,  # UNKNOWN_QUERY_PARAMETER
    457,  # BAD_QUERY_PARAMETER
})  # fmt: skip
_SERVER_SAYS = re.compile(r"server response:\s*(.*)", re.S)
_TRAILER = re.compile(r"\s*(\(version [^()]*(\([^()]*\))?[^()]*\)\s*)?(\(for url [^)]*\))?\s*$")


def one_line(text: str, limit: int = 400) -> str:
    """``text`` folded to one line of at most ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def bad_input(field: str, reason: str) -> typer.Exit:
    """Print ``error: <field>: <reason>`` on one line; the exit (code 2) for the caller to raise."""
    typer.echo(f"error: {field}: {one_line(reason)}", err=True)
    return typer.Exit(2)


def unreachable(where: str, exc: Exception) -> typer.Exit:
    """Print ``error: <where>: <first line>``; the exit (code 1) for the caller to raise."""
    text = str(exc).strip()
    message = text.splitlines()[0] if text else type(exc).__name__
    typer.echo(f"error: {where}: {message}", err=True)
    return typer.Exit(1)


def server_message(exc: ClickHouseError) -> str:
    """What the server said (``Code: 62. DB::Exception: Syntax error ...``), without the
    driver's preamble, the server version and the URL."""
    text = str(exc)
    found = _SERVER_SAYS.search(text)
    return _TRAILER.sub("", found.group(1) if found else text)


def run_read(call: Callable[[], T], where: str) -> T:
    """Run a read; bad input exits 2 with the reason, anything else from ``where`` exits 1."""
    try:
        return call()
    except ReadError as exc:
        raise bad_input(exc.field, exc.reason) from None
    except (ValueError, OverflowError) as exc:  # e.g. a range past what datetimes can hold
        raise bad_input(ReadError.field, str(exc) or type(exc).__name__) from None
    except ClickHouseError as exc:
        if exc.code in QUERY_ERRORS:
            raise bad_input("query", server_message(exc)) from None
        raise unreachable(where, exc) from None
    except Exception as exc:  # clickhouse-connect wraps transport and server errors alike
        raise unreachable(where, exc) from None


def print_json(value: object) -> None:
    """One JSON document on stdout; values msgspec has no encoding for (IPv4 and IPv6
    addresses from ClickHouse, ...) are written as their text."""
    sys.stdout.buffer.write(msgspec.json.encode(value, enc_hook=str) + b"\n")
