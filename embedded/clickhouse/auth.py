"""Who a request is: its credentials checked against the server's users, and whether a web
page sent it."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message

from tally.embedded.clickhouse.access import Login
from tally.embedded.clickhouse.errors import ClickHouseError, ErrorCode


@dataclass(frozen=True)
class Credentials:
    """The administrator and, if declared, one user per component (``access``)."""

    user: str
    password: str = field(repr=False)
    components: Mapping[str, Login] = field(default_factory=dict, repr=False)

    def check(self, headers: Message, params: Mapping[str, str]) -> Login:
        """The request's login; raises unless it carries a known user and its password (401 if
        it carries none)."""
        presented = presented_credentials(headers, params)
        if presented is None:
            raise ClickHouseError.of(
                ErrorCode.REQUIRED_PASSWORD,
                "Authentication required: send X-ClickHouse-User and X-ClickHouse-Key,"
                " or HTTP basic authentication",
            )
        user, password = presented
        login = self.components.get(user) or Login(self.user, self.password)
        same_user = hmac.compare_digest(user.encode(), login.name.encode())
        if hmac.compare_digest(password.encode(), login.password.encode()) and same_user:
            return login
        raise ClickHouseError.of(
            ErrorCode.AUTHENTICATION_FAILED,
            f"{user}: Authentication failed: password is incorrect, "
            "or there is no user with such name",
        )


def presented_credentials(headers: Message, params: Mapping[str, str]) -> tuple[str, str] | None:
    """User and password from X-ClickHouse-User/Key, Basic auth or the URL; ``None`` if the
    request carries none of them."""
    if headers.get("X-ClickHouse-User") is not None or headers.get("X-ClickHouse-Key") is not None:
        return headers.get("X-ClickHouse-User") or "default", headers.get("X-ClickHouse-Key", "")
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(token, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return "", ""
        return user, password
    if "user" in params or "password" in params:
        return params.get("user", "default"), params.get("password", "")
    return None


# What browsers send with a request that a page on another site (or port) makes.
_CROSS_SITE_FETCH = frozenset({"cross-site", "same-site"})


def cross_site(headers: Message) -> str | None:
    """Why a request comes from a web page, or ``None``.

    Browsers send ``Origin`` with every cross-origin request (and with POSTs) and
    ``Sec-Fetch-Site`` with every request; clients (clickhouse-connect, curl) send neither. The
    server serves no pages, so no page has a reason to call it, and it answers no CORS preflight.
    """
    if headers.get("Origin") is not None:
        return "requests with an Origin header (from a web page) are not allowed"
    if headers.get("Sec-Fetch-Site", "").strip().lower() in _CROSS_SITE_FETCH:
        return "cross-site requests (Sec-Fetch-Site) are not allowed"
    return None
