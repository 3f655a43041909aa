"""Bounded HTTP sessions: the ``SET``/``USE`` statements each ``session_id`` replays."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tally.embedded.clickhouse.errors import ClickHouseError, ErrorCode
from tally.embedded.clickhouse.limits import Limits


@dataclass
class _Session:
    statements: list[str]
    expires_at: float


class SessionStore:
    """``SET``/``USE`` statements per ``session_id``, replayed on the session's next requests.

    At most ``max_sessions`` live sessions, each kept at most ``max_timeout`` seconds after its
    last request: clients cannot make the server remember without bound.
    """

    def __init__(
        self,
        max_sessions: int = Limits.max_sessions,
        max_timeout: float = Limits.max_session_timeout,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_sessions = max_sessions
        self.max_timeout = max_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}

    def check_timeout(self, timeout: float) -> None:
        """clickhouse-server's rule: a timeout above ``max_session_timeout`` is an error."""
        if not 0 <= timeout <= self.max_timeout:
            raise ClickHouseError.of(
                ErrorCode.INVALID_SESSION_TIMEOUT,
                f"Session timeout {timeout:g} is not within 0 and the server's"
                f" max_session_timeout: {self.max_timeout:g}",
            )

    def statements(self, session_id: str | None, timeout: float) -> list[str]:
        if session_id is None:
            return []
        with self._lock:
            self._expire()
            session = self._sessions.get(session_id)
            if session is None:
                return []
            session.expires_at = self._clock() + timeout
            return list(session.statements)

    def reserve(self, session_id: str, timeout: float) -> None:
        """Make room for ``session_id`` before its statement runs; an error when full."""
        with self._lock:
            self._expire()
            if session_id in self._sessions:
                return
            if len(self._sessions) >= self.max_sessions:
                raise ClickHouseError.of(
                    ErrorCode.TOO_MANY_SIMULTANEOUS_QUERIES,
                    f"Too many sessions (the server's limit is {self.max_sessions}): close one"
                    " (close_session=1) or wait until one expires",
                )
            self._sessions[session_id] = _Session([], self._clock() + timeout)

    def remember(self, session_id: str, timeout: float, statement: str) -> None:
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:  # expired while its statement ran
                session = self._sessions[session_id] = _Session([], 0.0)
            session.statements.append(statement)
            session.expires_at = self._clock() + timeout

    def close(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._sessions)

    def _expire(self) -> None:
        now = self._clock()
        for session_id in [k for k, s in self._sessions.items() if s.expires_at < now]:
            del self._sessions[session_id]
