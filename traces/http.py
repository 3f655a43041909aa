"""``/api/v1`` trace endpoints: executions of a bucket, one execution's tree, the job log.

Thin shells over the trace plans (``traces/queries.py``), run by the API's ``AsyncReader``.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery, QueryParameter

from tally.read import AsyncReader
from tally.read.timerange import time_range
from tally.traces.ddl import TraceSchema
from tally.traces.queries import (
    ExecutionDetail,
    ExecutionFilter,
    ExecutionPage,
    JobLogFilter,
    execution_detail,
    page_executions,
    parse_tag,
    search_job_log,
)

Reader = NamedDependency[AsyncReader]
Optional = Annotated[str | None, QueryParameter()]
Tag = Annotated[str | None, QueryParameter(description="name=value")]


def trace_schema(reader: AsyncReader) -> TraceSchema:
    """The trace tables in the reader's database."""
    return TraceSchema(database=reader.settings.database)


class TraceController(Controller):
    """Read-token endpoints over the trace tables."""

    path = "/api/v1"
    tags = ["traces"]

    @get(
        "/executions",
        summary=(
            "Executions of a bucket, newest first (key, time range, state, tenant, code, tag,"
            " error text): one page, the total and the next cursor"
        ),
    )
    async def executions(
        self,
        reader: Reader,
        key: FromQuery[str],
        since: FromQuery[str] = "1h",
        until: Optional = None,
        status: Annotated[str | None, QueryParameter(description="Run state, e.g. failure")] = None,
        tenant: Optional = None,
        code: Optional = None,
        job: Optional = None,
        sampled: FromQuery[bool] = False,
        tag: Tag = None,
        cursor: Annotated[str | None, QueryParameter(description="A page's `next`")] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=10_000)] = 100,
        message: Annotated[
            str | None,
            QueryParameter(description="Text in the error's type or message", max_length=200),
        ] = None,
    ) -> ExecutionPage:
        start, end = time_range(since, until)
        f = ExecutionFilter(key, start, end, status, tenant, code, job, sampled, limit,
                            parse_tag(tag), cursor or None, message or None)  # fmt: skip
        return await reader.run(page_executions(trace_schema(reader), f))

    @get(
        "/executions/{execution_id:str}",
        summary="One execution's trace as a tree, and its children",
    )
    async def execution(self, reader: Reader, execution_id: FromPath[str]) -> ExecutionDetail:
        detail = await reader.run(execution_detail(trace_schema(reader), execution_id))
        if detail is None:
            raise NotFoundException(f"no execution {execution_id}")
        return detail

    @get("/joblog", summary="Job log events by job, tenant, state, event, tag and time")
    async def joblog(
        self,
        reader: Reader,
        since: FromQuery[str] = "24h",
        until: Optional = None,
        job: Optional = None,
        tenant: Optional = None,
        status: Optional = None,
        event: Optional = None,
        execution_id: Optional = None,
        tag: Tag = None,
        limit: Annotated[int, QueryParameter(ge=1, le=10_000)] = 200,
    ) -> list[dict[str, Any]]:
        start, end = time_range(since, until)
        f = JobLogFilter(
            start, end, job, tenant, status, event, execution_id, parse_tag(tag), limit
        )
        return await reader.run(search_job_log(trace_schema(reader), f))
