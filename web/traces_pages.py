"""Server-rendered trace pages: a bucket's executions, and one execution's trace tree.

Mount with ``create_app(settings, extra=[*web_handlers(...), *TRACE_PAGES])``: the pages share
the dashboards' base template, navigation, stylesheet and static files (``/ui/static/``).
``/traces`` lists the executions of a bucket (key, time range, state, tenant, result code, tag:
the same query string a dashboard link carries, plus ``message``: text in the error), one keyset
page at a time with "N of M" and a "Next" link; ``/traces/<id>`` shows the trace as a tree with
timing bars, the error's message and traceback, the job's id and arguments, the job log and the
parent/child executions. The pages use the API's guard (read token or the dashboard's session
cookie) like every other route, and send the dashboard's security headers (``web/headers.py``:
CSP without inline script or style, nosniff, ``frame-ancestors 'none'``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from litestar import Controller, Response, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery, QueryParameter

from tally.ingest.jobs.run import FAILURE, LIMITED, RETRY, SKIPPED, SUCCESS
from tally.read.errors import ReadError
from tally.read.timerange import time_range
from tally.traces.http import Reader, trace_schema
from tally.traces.queries import (
    ExecutionFilter,
    JobLogFilter,
    execution_detail,
    get_execution,
    key_tenants,
    page_executions,
    parse_tag,
    search_job_log,
)
from tally.web.headers import PAGE_HEADERS

HERE = Path(__file__).resolve().parent
_ENV = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
Optional = Annotated[str | None, QueryParameter()]
STATES = (SUCCESS, FAILURE, RETRY, LIMITED, SKIPPED)
PER_PAGE = 100


def _ms(us: int) -> str:
    return f"{us / 1000:.1f} ms" if us < 10_000_000 else f"{us / 1_000_000:.1f} s"


_ENV.filters["ms"] = _ms


def _page(name: str, **context: object) -> Response:
    html = _ENV.get_template(f"traces/{name}").render(section="traces", **context)
    return Response(html, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


class TracePages(Controller):
    """The trace pages (behind the API's guard: read token or session cookie)."""

    include_in_schema = False

    @get("/traces")
    async def executions_page(
        self,
        reader: Reader,
        key: Optional = None,
        since: FromQuery[str] = "1h",
        until: Optional = None,
        status: Optional = None,
        tenant: Optional = None,
        code: Optional = None,
        job: Optional = None,
        tag: Optional = None,
        cursor: Optional = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = PER_PAGE,
        message: Optional = None,
    ) -> Response:
        """The executions of a bucket, one page (a form when no key is given)."""
        given = {"key": key, "since": since, "until": until, "status": status, "tenant": tenant,
                 "code": code, "job": job, "tag": tag, "message": message}  # fmt: skip
        query = {name: value or "" for name, value in given.items()}
        page, tenants, problem = None, [], ""
        if key:
            schema = trace_schema(reader)
            try:
                start, end = time_range(since or "1h", until or None)  # a form sends ""
                f = ExecutionFilter(
                    key, start, end, status or None, tenant or None, code or None, job or None,
                    limit=limit, tag=parse_tag(tag), cursor=cursor or None,
                    message=(message or "")[:200] or None,
                )  # fmt: skip
                page = await reader.run(page_executions(schema, f))
                tenants = await reader.run(key_tenants(schema, key, start, end))
            except ReadError as exc:  # a bad range, tag or cursor: said on the page, form kept
                problem = exc.reason
        following = None
        if page is not None and page.next:
            following = urlencode({**{k: v for k, v in query.items() if v}, "limit": limit,
                                   "cursor": page.next})  # fmt: skip
        first = urlencode({k: v for k, v in query.items() if v}) if cursor else None
        return _page("executions.html", page=page, q=query, states=STATES, tenants=tenants,
                     problem=problem, next_query=following, first_query=first)  # fmt: skip

    @get("/traces/{execution_id:str}")
    async def execution_page(self, reader: Reader, execution_id: FromPath[str]) -> Response:
        """One execution: its trace tree with timings, job log, parent and children."""
        schema = trace_schema(reader)
        detail = await reader.run(execution_detail(schema, execution_id))
        if detail is None:
            raise NotFoundException(f"no execution {execution_id}")
        row = detail.execution
        parent = await reader.run(get_execution(schema, row.parent_id)) if row.parent_id else None
        started = row.started if row.started.tzinfo else row.started.replace(tzinfo=UTC)
        wanted = JobLogFilter(started, datetime.now(UTC), execution_id=execution_id, limit=100)
        log = await reader.run(search_job_log(schema, wanted))
        return _page("execution.html", e=row, tree=detail.tree, kids=detail.children,
                     parent=parent, log=log, total=max(row.duration_us, 1))  # fmt: skip


TRACE_PAGES = [TracePages]


def bucket_link(
    key: str,
    start: datetime,
    end: datetime,
    state: str | None = None,
    tenant: str | None = None,
    code: str | None = None,
) -> str:
    """The executions page of one dashboard bucket (for links from charts and monitors)."""
    query = {"key": key, "since": start.isoformat(), "until": end.isoformat()}
    for name, value in (("status", state), ("tenant", tenant), ("code", code)):
        if value:
            query[name] = value
    return f"/traces?{urlencode(query)}"
