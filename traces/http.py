"""``/api/v1`` trace endpoints: executions of a bucket, one execution's tree, the job log."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, get
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery, QueryParameter

from tally.read.errors import BadRange
from tally.traces.queries import (
    ExecutionFilter,
    ExecutionPage,
    ExecutionRow,
    JobLogFilter,
    TraceNode,
    children,
    execution_tree,
    page_executions,
    search_job_log,
)
from tally.traces.reader import TraceReader, time_range

Optional = Annotated[str | None, QueryParameter()]


class ExecutionDetail(msgspec.Struct, frozen=True):
    """One execution, its trace tree and the executions it enqueued or called."""

    execution: ExecutionRow
    tree: list[TraceNode]
    children: list[ExecutionRow]


def trace_reader(state: State) -> TraceReader:
    """The app's trace reader (created on first use, closed with the app)."""
    reader = state.get("trace_reader")
    if reader is None:
        reader = state["trace_reader"] = TraceReader(state.settings.read)
    return reader


def parse_tag(tag: str | None) -> tuple[str, str] | None:
    """``name=value`` as a pair (None for none; 400 without ``=`` or a name)."""
    if not tag:
        return None
    name, sep, value = tag.partition("=")
    if not sep or not name:
        raise BadRange("tag must be name=value")
    return name, value


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
        state: State,
        key: FromQuery[str],
        since: FromQuery[str] = "1h",
        until: Optional = None,
        status: Annotated[str | None, QueryParameter(description="Run state, e.g. failure")] = None,
        tenant: Optional = None,
        code: Optional = None,
        job: Optional = None,
        sampled: FromQuery[bool] = False,
        tag: Annotated[str | None, QueryParameter(description="name=value")] = None,
        cursor: Annotated[str | None, QueryParameter(description="A page's `next`")] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=10_000)] = 100,
        message: Annotated[
            str | None,
            QueryParameter(description="Text in the error's type or message", max_length=200),
        ] = None,
    ) -> ExecutionPage:
        start, end = time_range(since, until)
        f = ExecutionFilter(
            key,
            start,
            end,
            status,
            tenant,
            code,
            job,
            sampled,
            limit,
            tag=parse_tag(tag),
            cursor=cursor or None,
            message=message or None,
        )
        return await trace_reader(state).run(page_executions, f)

    @get(
        "/executions/{execution_id:str}",
        summary="One execution's trace as a tree, and its children",
    )
    async def execution(self, state: State, execution_id: FromPath[str]) -> ExecutionDetail:
        reader = trace_reader(state)
        found = await reader.run(execution_tree, execution_id)
        if found is None:
            raise NotFoundException(f"no execution {execution_id}")
        row, tree = found
        kids = await reader.run(children, execution_id)
        return ExecutionDetail(row, tree, kids)

    @get("/joblog", summary="Job log events by job, tenant, state, event, tag and time")
    async def joblog(
        self,
        state: State,
        since: FromQuery[str] = "24h",
        until: Optional = None,
        job: Optional = None,
        tenant: Optional = None,
        status: Optional = None,
        event: Optional = None,
        execution_id: Optional = None,
        tag: Annotated[str | None, QueryParameter(description="name=value")] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=10_000)] = 200,
    ) -> list[dict[str, Any]]:
        start, end = time_range(since, until)
        f = JobLogFilter(
            start, end, job, tenant, status, event, execution_id, parse_tag(tag), limit
        )
        return await trace_reader(state).run(search_job_log, f)
