"""The bounds on what one client can make the embedded ClickHouse server hold."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Bounds on what one client can make the server hold."""

    max_query_bytes: int = 16 << 20  # a non-INSERT body (statement, form fields) in memory
    max_insert_bytes: int = 1 << 30  # an INSERT's rows, collected before chDB runs them
    max_sessions: int = 1000  # sessions with remembered SET/USE statements
    max_session_timeout: float = 3600.0  # clickhouse-server's max_session_timeout default
    max_allowed_inserts: int = 10_000  # INSERT heads whose checks passed, kept to skip them


DEFAULT_LIMITS = Limits()
