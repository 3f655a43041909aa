"""Just enough SQL lexing to find where an INSERT's data begins and which FORMAT a query
names, and the quoting of literals, identifiers and ``SET`` statements."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from tally.embedded.clickhouse.errors import ClickHouseError, ErrorCode

_TOKEN = re.compile(
    rb"""
    (?P<space>\s+)
    | (?P<comment>--[^\n]*|\#[^\n]*|/\*.*?\*/)
    | (?P<quoted>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*"|`(?:[^`\\]|\\.|``)*`)
    | (?P<unclosed>/\*|['"`])
    | (?P<word>[A-Za-z_\x80-\xff][A-Za-z0-9_$\x80-\xff]*)
    | (?P<open>[(\[{])
    | (?P<close>[)\]}])
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
# Before a top-level FORMAT, these make an INSERT take its rows from elsewhere (or end it).
_INSERT_WITHOUT_DATA = frozenset({b"SELECT", b"WITH", b"VALUES", b"WATCH", b"FROM", b";"})
# FORMAT right after these is a table or function name, not the FORMAT clause.
_NAME_CONTEXT = frozenset({b"INTO", b"TABLE", b"FUNCTION", b"."})


class NeedMore(Exception):
    """The buffer ends inside the statement's head: read more before deciding."""


@dataclass(frozen=True)
class _Token:
    kind: str
    raw: bytes

    @property
    def text(self) -> bytes:
        """Words upper-cased (SQL keywords are case-insensitive), anything else as is."""
        return self.raw.upper() if self.kind == "word" else self.raw

    @property
    def depth(self) -> int:
        return {"open": 1, "close": -1}.get(self.kind, 0)


def _tokens(sql: bytes, at_eof: bool) -> Iterator[tuple[_Token, int, int]]:
    """Significant tokens with their offsets, lazily; ``NeedMore`` if one may be cut off."""
    for match in _TOKEN.finditer(sql):
        kind = match.lastgroup or "other"
        cut = kind == "unclosed" or (match.end() == len(sql) and kind in ("word", "comment"))
        if cut and not at_eof:
            raise NeedMore
        if kind not in ("space", "comment"):
            yield _Token(kind, match.group()), match.start(), match.end()


def first_keyword(sql: bytes) -> bytes:
    """The statement's first word, upper-cased (``b""`` if none)."""
    first = next(_tokens(sql, at_eof=True), None)
    return first[0].text if first and first[0].kind == "word" else b""


@dataclass(frozen=True)
class InsertHead:
    """``INSERT ... FORMAT <format>``: the statement without FORMAT, and where the data starts."""

    statement: str
    format: str
    data_start: int


def find_insert_head(sql: bytes, at_eof: bool) -> InsertHead | None:
    """The head of an INSERT whose rows follow in ``sql``; ``None`` for any other statement.

    Raises ``NeedMore`` when ``sql`` (not ``at_eof``) ends before the answer is known.
    """
    tokens = _tokens(sql, at_eof)
    first = next(tokens, None)
    if first is None and not at_eof:
        raise NeedMore
    if first is None or first[0].text != b"INSERT":
        return None
    depth, previous = 0, b"INSERT"
    for token, start, _ in tokens:
        depth += token.depth
        if depth == 0 and token.text in _INSERT_WITHOUT_DATA:
            return None
        if depth == 0 and token.text == b"FORMAT" and previous not in _NAME_CONTEXT:
            return _format_clause(sql, start, tokens, at_eof)
        previous = token.text
    if not at_eof:
        raise NeedMore
    return None


def _format_clause(
    sql: bytes, format_start: int, tokens: Iterator[tuple[_Token, int, int]], at_eof: bool
) -> InsertHead | None:
    name = next(tokens, None)
    if name is None and not at_eof:
        raise NeedMore
    if name is None or name[0].kind != "word":
        return None
    _, start, end = name
    statement = sql[:format_start].decode()
    return InsertHead(statement, sql[start:end].decode(), _data_start(sql, end, at_eof))


def _data_start(sql: bytes, pos: int, at_eof: bool) -> int:
    """ClickHouse's rule: data begins after the newline following the format name, if there is
    one, else after the spaces and tabs."""
    end = len(sql)
    while pos < end and sql[pos] in b" \t\f":
        pos += 1
    if pos < end and sql[pos] == ord("\r"):
        pos += 1
    if pos == end and not at_eof:
        raise NeedMore
    if pos < end and sql[pos] == ord("\n"):
        pos += 1
    return pos


def output_format(sql: bytes) -> str | None:
    """The format named by the query's own trailing ``FORMAT`` clause, if any."""
    tokens = [token for token, _, _ in _tokens(sql, at_eof=True)]
    depth, found = 0, None
    for i, token in enumerate(tokens):
        depth += token.depth
        if depth or token.text != b"FORMAT" or i + 1 == len(tokens) or tokens[i + 1].kind != "word":
            continue
        rest = tokens[i + 2 :]
        if not rest or rest[0].text in (b"SETTINGS", b";"):
            found = tokens[i + 1].raw.decode()
    return found


def without_output_format(sql: bytes) -> bytes:
    """``sql`` without its trailing ``FORMAT <name>`` clause (``EXPLAIN`` of it then answers in
    the format its caller asks for). Whatever this misses, ``EXPLAIN`` answers in another
    format, which the access check refuses."""
    spans = [(token, start, end) for token, start, end in _tokens(sql, at_eof=True)]
    depth, cut = 0, None
    for i, (token, start, _) in enumerate(spans):
        depth += token.depth
        if (
            depth
            or token.text != b"FORMAT"
            or i + 1 == len(spans)
            or spans[i + 1][0].kind != "word"
        ):
            continue
        rest = spans[i + 2 :]
        if not rest or rest[0][0].text in (b"SETTINGS", b";"):
            cut = (start, spans[i + 1][2])
    return sql if cut is None else sql[: cut[0]] + sql[cut[1] :]


def quote_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def set_statement(settings: Mapping[str, str]) -> str:
    """One ``SET`` for all ``settings``; values are always quoted string literals."""
    for name in settings:
        if not _SETTING_NAME.match(name):
            raise ClickHouseError.of(ErrorCode.UNKNOWN_SETTING, f"Unknown setting '{name}'")
    return "SET " + ", ".join(f"{name} = {quote_string(v)}" for name, v in settings.items())
