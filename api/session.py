"""The dashboard's session cookie: a read-only credential derived from the read token.

The browser never holds a token in script: ``/ui/login`` checks the token once and sets this
cookie (HttpOnly, SameSite=Strict), which opens reads only, never ``/sql``.
"""

from __future__ import annotations

import hashlib
import hmac

from litestar.connection import ASGIConnection

COOKIE = "tally_ui"


def session_value(read_token: str) -> str:
    """The cookie's value: HMAC of a fixed label under the read token (changes with it)."""
    return hmac.new(read_token.encode(), b"tally-ui-session-v1", hashlib.sha256).hexdigest()


def has_session(connection: ASGIConnection, read_token: str) -> bool:
    """True if the request carries a valid dashboard cookie."""
    presented = connection.cookies.get(COOKIE, "")
    return bool(presented) and hmac.compare_digest(presented, session_value(read_token))
