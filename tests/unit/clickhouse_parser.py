"""ClickHouse's own parser, for tests that check generated SQL without a server (chDB)."""

from __future__ import annotations

import chdb


def formatted(statement: str) -> str:
    """``statement`` as ClickHouse formats it (``formatQuery``); raises if it does not parse."""
    literal = statement.encode().hex()
    return chdb.query(f"SELECT formatQuery(unhex('{literal}'))", "TabSeparatedRaw").bytes().decode()
