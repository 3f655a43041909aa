"""Bearer-token guards: the read token opens reads, the SQL token opens reads and ``/sql``."""

from __future__ import annotations

import hmac

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from tally.api.session import has_session
from tally.api.settings import ApiSettings

SCOPE_SQL = "sql"


def _presented(connection: ASGIConnection) -> str:
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise NotAuthorizedException(
            "missing token: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return token.strip()


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def require_token(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """Reject requests without a valid token; ``/sql`` needs the SQL token."""
    settings: ApiSettings = connection.app.state.settings
    if "authorization" not in connection.headers and has_session(connection, settings.read_token):
        if handler.opt.get("scope") == SCOPE_SQL:  # the dashboard's cookie only reads
            raise PermissionDeniedException("the dashboard session is read-only")
        return
    token = _presented(connection)
    is_sql = _equal(token, settings.sql_token)
    if not is_sql and not _equal(token, settings.read_token):
        raise NotAuthorizedException("invalid token", headers={"WWW-Authenticate": "Bearer"})
    if handler.opt.get("scope") == SCOPE_SQL and not is_sql:
        raise PermissionDeniedException(
            "this endpoint needs the SQL token; the read token is read-only"
        )
