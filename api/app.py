"""The ASGI app: ``/api/v1`` JSON API with bearer tokens and an OpenAPI schema.

The same app will serve the dashboard: pass its route handlers as ``extra``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from clickhouse_connect.driver.exceptions import ClickHouseError, DatabaseError
from litestar import Litestar, Request, Response
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import Provide
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ControllerRouterHandler

from tally.api.auth import require_token
from tally.api.coalesce import Coalescer
from tally.api.monitors import MonitorController
from tally.api.routes import KindsController, ReadController, SqlController
from tally.api.settings import ApiSettings
from tally.api.sql import SqlRefused, SqlRunner
from tally.read import AsyncReader, ReadError
from tally.traces.http import TraceController

log = logging.getLogger("tally.api")


def _bad_request(request: Request, exc: ReadError) -> Response:
    return Response({"error": exc.field, "reason": exc.reason}, status_code=400)


def _sql_refused(request: Request, exc: SqlRefused) -> Response:
    return Response({"error": exc.error, "reason": exc.reason}, status_code=exc.status)


def _clickhouse_error(request: Request, exc: ClickHouseError) -> Response:
    rejected = isinstance(exc, DatabaseError) and "Code:" in str(exc)
    if rejected and request.url.path.endswith("/sql"):
        # The user's own SQL failed: say why (ClickHouse's message, no credentials in it).
        reason = str(exc).split("\n", 1)[0][:2000]
        return Response({"error": "sql", "reason": reason}, status_code=400)
    if rejected:
        log.error("ClickHouse rejected a read query: %s", str(exc).split("\n", 1)[0][:500])
        reason = "ClickHouse rejected the query; the API log has the details"
        return Response({"error": "backend", "reason": reason}, status_code=500)
    log.warning("ClickHouse unreachable: %s", type(exc).__name__)
    return Response({"error": "backend", "reason": "ClickHouse is unavailable"}, status_code=503)


def _internal_error(request: Request, exc: Exception) -> Response:
    """A bug, not bad input: log it with its traceback; the client gets no details."""
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return Response({"error": "internal", "reason": "internal error; see the API log"}, 500)


def _reader(state: State) -> AsyncReader:
    return state.reader


def _coalescer(state: State) -> Coalescer:
    return state.coalescer


def _sql_runner(state: State) -> SqlRunner:
    return state.sql_runner


def create_app(
    settings: ApiSettings, extra: Sequence[ControllerRouterHandler] = (), debug: bool = False
) -> Litestar:
    """The app for ``settings``; ``extra`` handlers (the dashboard) are mounted beside the API."""
    reader = AsyncReader(settings.read)
    sql_runner = SqlRunner(settings.sql)

    async def close_reader(app: Litestar) -> None:
        await reader.close()
        await sql_runner.close()

    return Litestar(
        route_handlers=[
            ReadController,
            KindsController,
            SqlController,
            MonitorController,
            TraceController,
            *extra,
        ],
        guards=[_guard],
        dependencies={
            "reader": Provide(_reader, sync_to_thread=False),
            "coalescer": Provide(_coalescer, sync_to_thread=False),
            "sql_runner": Provide(_sql_runner, sync_to_thread=False),
        },
        exception_handlers={
            ReadError: _bad_request,
            ClickHouseError: _clickhouse_error,
            SqlRefused: _sql_refused,
            HTTP_500_INTERNAL_SERVER_ERROR: _internal_error,
        },
        state=State(
            {
                "settings": settings,
                "reader": reader,
                "coalescer": Coalescer(),
                "sql_runner": sql_runner,
            }
        ),
        on_shutdown=[close_reader],
        openapi_config=OpenAPIConfig(
            title="tally",
            version="1",
            description="Business metrics from background jobs: keys, series and read-only SQL.",
            path="/api/v1/schema",
            # JSON only: a rendered page would load its script from a CDN (offline here).
            render_plugins=[JsonRenderPlugin(path=["/", "/openapi.json"])],
            components=Components(
                security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}
            ),
            security=[{"bearer": []}],
        ),
        debug=debug,
    )


def _guard(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    if handler.opt.get("exclude_from_auth") or connection.url.path.startswith("/api/v1/schema"):
        return
    require_token(connection, handler)
