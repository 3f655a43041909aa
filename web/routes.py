"""The dashboard's handlers: pages (server-rendered), login, KPI totals and static files.

Pages and static files pass the API's token guard (``exclude_from_auth``) and check the
session cookie themselves (a page without one redirects to the login form). Data comes from
``/api/v1`` (and ``/ui/api/kpi``) with that cookie, which opens reads only.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

import msgspec
from jinja2 import Environment, FileSystemLoader, select_autoescape
from litestar import Controller, Request, Response, Router, get, post
from litestar.di import NamedDependency, Provide
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, FromQuery, QueryParameter
from litestar.response import Redirect
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

from tally.api.session import COOKIE, has_session, session_value
from tally.api.settings import ApiSettings
from tally.read import AsyncReader, BadRange, ReadError
from tally.read.timerange import parse_duration
from tally.schemas.granularity import DEFAULT_GRANULARITIES, granularity_seconds
from tally.web.check import UnknownPath, unknown_paths
from tally.web.generic import for_key
from tally.web.headers import PAGE_HEADERS
from tally.web.kpi import Kpi, kpi
from tally.web.loader import Catalog
from tally.web.model import GRANULARITIES, RANGES, Dashboard
from tally.web.settings import WebSettings

HERE = Path(__file__).parent
PUBLIC = {"exclude_from_auth": True}
KEYS_PER_PAGE = 100
ICON = (HERE / "static" / "favicon.svg").read_bytes()
Reader = NamedDependency[AsyncReader]


@dataclass(frozen=True)
class Ui:
    """What the pages need, built once at start (dashboards re-read when their files change)."""

    settings: WebSettings
    catalog: Catalog
    templates: Environment

    def page(self, template: str, status: int = 200, **context: object) -> Response:
        loaded = self.catalog.current()
        html = self.templates.get_template(template).render(
            dashboards=loaded.dashboards, errors=loaded.errors, **context
        )
        return Response(html, status_code=status, media_type="text/html", headers=PAGE_HEADERS)

    async def dashboard(self, reader: AsyncReader, d: Dashboard) -> Response:
        """The page of dashboard ``d`` (its spec and the served granularities as page data)."""
        try:
            schema = await reader.schema()
        except Exception as exc:  # ClickHouse down or misconfigured: say so on the page
            reason = f"ClickHouse is unavailable ({type(exc).__name__}); reload when it is back"
            return self.page("missing.html", status=503, name=d.title, failed=[], reason=reason)
        data = {
            "dashboard": d,
            "granularities": list(schema.granularities),
            "serverZone": schema.calendar.time_zone,
            "refreshSeconds": self.settings.live_refresh_s,
            "ranges": list(RANGES),
            "rangeSeconds": {r: parse_duration(r) for r in RANGES},
            "granularitySeconds": granularity_seconds(
                dict.fromkeys([*DEFAULT_GRANULARITIES, *schema.granularities])
            ),
            # buckets one row may have: granularities over it are disabled for the range
            "maxBuckets": min(reader.settings.max_buckets, reader.settings.max_points),
        }
        return self.page(
            "dashboard.html",
            d=d,
            page_json=_json_script(data),
            ranges=RANGES,
            granularities=[g for g in GRANULARITIES if g == "auto" or g in schema.granularities],
        )


Site = NamedDependency[Ui]


def _json_script(value: object) -> str:
    """JSON safe inside ``<script type="application/json">`` (no ``</script>`` breakout)."""
    text = msgspec.json.encode(value).decode()
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _settings(request: Request) -> ApiSettings:
    return request.app.state.settings


def _signed_in(request: Request) -> bool:
    return has_session(request, _settings(request).read_token)


def _gate(request: Request) -> Response | None:
    """None when signed in, else the redirect to the login form (and back here after)."""
    if _signed_in(request):
        return None
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return Redirect(f"/ui/login?next={quote(here, safe='')}")


async def _static_headers(response: Response) -> Response:
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


class DashboardPages(Controller):
    """Pages, login, KPI totals; ``ui`` is the app's :class:`Ui` (a dependency)."""

    opt = PUBLIC

    @get("/", include_in_schema=False)
    async def root(self) -> Redirect:
        return Redirect("/ui/")

    @get("/ui/login", include_in_schema=False)
    async def login_form(self, request: Request, ui: Site) -> Response:
        return ui.page("login.html", failed=False, next=request.query_params.get("next", "/ui/"))

    @post("/ui/login", include_in_schema=False, status_code=303)
    async def login(
        self,
        request: Request,
        ui: Site,
        data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Response:
        api = _settings(request)
        token = data.get("token", "").strip()
        known = (api.read_token, api.sql_token)
        target = data.get("next", "/ui/")
        if not target.startswith("/ui/") or "\\" in target:
            target = "/ui/"  # only pages of this app: no open redirect
        if not any(hmac.compare_digest(token.encode(), t.encode()) for t in known):
            return ui.page("login.html", status=401, failed=True, next=target)
        response = Redirect(target, status_code=303)
        response.set_cookie(
            COOKIE,
            session_value(api.read_token),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    @post("/ui/logout", include_in_schema=False, status_code=303)
    async def logout(self) -> Response:
        response = Redirect("/ui/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    @get("/ui/", include_in_schema=False)
    async def index(
        self,
        request: Request,
        ui: Site,
        reader: Reader,
        q: Annotated[str, QueryParameter()] = "",
        cursor: Annotated[str, QueryParameter()] = "",
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = KEYS_PER_PAGE,
    ) -> Response:
        if (gate := _gate(request)) is not None:
            return gate
        page, problem = None, ""
        try:
            page = await reader.key_page(q, "30d", None, cursor or None, limit)
        except ReadError as exc:  # a bad pattern or cursor: say so next to the search box
            problem = exc.reason
        except Exception as exc:  # ClickHouse down: the page still lists dashboards
            problem = f"ClickHouse is unavailable ({type(exc).__name__})"
        context = {"page": page, "problem": problem, "q": q, "cursor": cursor, "limit": limit}
        return ui.page("index.html", **context)

    @get("/favicon.ico", include_in_schema=False)
    async def favicon(self) -> Response:
        return Response(ICON, media_type="image/svg+xml", headers=PAGE_HEADERS)

    @get("/ui/d/{name:str}", include_in_schema=False)
    async def dashboard(
        self, request: Request, ui: Site, reader: Reader, name: FromPath[str]
    ) -> Response:
        if (gate := _gate(request)) is not None:
            return gate
        loaded = ui.catalog.current()
        d = loaded.dashboards.get(name)
        if d is None:
            failed = [e for e in loaded.errors if Path(e.file).stem.lower() == name]
            return ui.page("missing.html", status=404, name=name, failed=failed)
        return await ui.dashboard(reader, d)

    @get("/ui/key", include_in_schema=False)
    async def key_page(
        self, request: Request, ui: Site, reader: Reader, key: Annotated[str, QueryParameter()]
    ) -> Response:
        if (gate := _gate(request)) is not None:
            return gate
        try:
            paths = [p.path for p in await reader.paths(key)]
            kinds = await reader.path_kinds(key) if paths else {}
        except ReadError as exc:
            return ui.page("missing.html", status=400, name=key, failed=[], reason=exc.reason)
        return await ui.dashboard(reader, for_key(key, paths, kinds))

    @get("/ui/monitors/{name:str}", include_in_schema=False)
    async def monitor_page(self, request: Request, ui: Site, name: FromPath[str]) -> Response:
        """A monitor's page (its link in notifications); data from /api/v1/monitors/<name>."""
        if (gate := _gate(request)) is not None:
            return gate
        at = request.query_params.get("at", "")
        data = {"name": name, "segment": request.query_params.get("segment"),
                "at": int(at) if at.isdigit() else None}  # fmt: skip
        return ui.page("monitor.html", name=name, page_json=_json_script(data))


class DashboardData(Controller):
    """The dashboard's own JSON (session cookie or read token, like ``/api/v1``)."""

    path = "/ui/api"
    tags = ["ui"]

    @get("/kpi", summary="KPI totals over a range and the period before it")
    async def kpi_totals(
        self,
        reader: Reader,
        key: FromQuery[str],
        since: FromQuery[int],
        until: FromQuery[int],
        granularity: FromQuery[str] = "1h",
        path: Annotated[list[str] | None, QueryParameter()] = None,
        expression: Annotated[list[str] | None, QueryParameter()] = None,
        as_of: Annotated[int | None, QueryParameter(description="as /api/v1/series")] = None,
    ) -> Kpi:
        if until <= since:
            raise BadRange("until must be after since")
        return await kpi(
            reader, key, path or [], expression or [], since, until, granularity, as_of
        )

    @get("/unknown", summary="Paths matching nothing the key wrote, with close ones")
    async def unknown(
        self,
        reader: Reader,
        key: FromQuery[str],
        path: Annotated[list[str] | None, QueryParameter()] = None,
        expression: Annotated[list[str] | None, QueryParameter()] = None,
    ) -> list[UnknownPath]:
        known = [p.path for p in await reader.paths(key)]
        return unknown_paths(path or [], expression or [], known)


def web_handlers(settings: WebSettings) -> list[ControllerRouterHandler]:
    """Route handlers to mount with ``create_app(settings, extra=web_handlers(...))``: the
    dashboard's controllers with their :class:`Ui`, and the static files (``/ui/static``)."""
    ui = Ui(
        settings,
        Catalog(settings.dashboards_dir),
        Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        ),
    )
    pages = Router(
        "/",
        route_handlers=[DashboardPages, DashboardData],
        dependencies={"ui": Provide(lambda: ui, use_cache=True, sync_to_thread=False)},
    )
    static = create_static_files_router(
        path="/ui/static",
        directories=[HERE / "static"],
        opt=PUBLIC,
        include_in_schema=False,
        after_request=_static_headers,
    )
    return [pages, static]
