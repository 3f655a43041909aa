"""``tally traces list|show|log|writer``: executions of a bucket, one trace tree, the job log."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from tally.cli.errors import print_json, run_read
from tally.cli.options import (
    ClickHouseTarget,
    Json,
    clickhouse_options,
    command_group,
)
from tally.read import Reader
from tally.read.plan import Plan
from tally.read.timerange import time_range
from tally.traces.ddl import TraceSchema
from tally.traces.queries import (
    ExecutionFilter,
    ExecutionPage,
    JobLogFilter,
    TraceNode,
    execution_detail,
    page_executions,
    parse_tag,
    search_job_log,
)
from tally.traces.service import app as writer_app

app = command_group("traces", "Executions, trace trees and the job log (see docs/traces.md).")
Since = Annotated[str, typer.Option(help="Start: ISO time, unix seconds or a duration ago.")]
Until = Annotated[str | None, typer.Option(help="End (exclusive). [default: now]")]
Opt = Annotated[str | None, typer.Option()]
T = TypeVar("T")


def _read(target: ClickHouseTarget, plan: Callable[[TraceSchema], Plan[T]]) -> T:
    """Run ``plan(schema)`` (bad input exits 2 with the reason, see ``errors.run_read``)."""
    with Reader(target.settings()) as reader:
        schema = TraceSchema(database=reader.settings.database)
        return run_read(lambda: reader.run(plan(schema)), "ClickHouse")


def _ms(us: int) -> str:
    return f"{us / 1000:.1f}ms"


@app.command("list")
@clickhouse_options
def list_(
    key: Annotated[str, typer.Argument(help="The dashboard key, e.g. event::job.")],
    since: Since = "1h",
    until: Until = None,
    state: Opt = None,
    tenant: Opt = None,
    code: Opt = None,
    job: Opt = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    cursor: Annotated[str | None, typer.Option(help="The `next` of the previous page.")] = None,
    json: Json = False,
    *,
    target: ClickHouseTarget,
) -> None:
    """Executions of a bucket, newest first, one page ("N of M"; --cursor for the next)."""

    def plan(schema: TraceSchema) -> Plan[ExecutionPage]:
        start, end = time_range(since, until)
        f = ExecutionFilter(key, start, end, state, tenant, code, job, False, limit, cursor=cursor)
        return page_executions(schema, f)

    page = _read(target, plan)
    rows = page.executions
    if json:
        return print_json(rows)
    for r in rows:
        traced = f"{r.lines} lines" if r.sampled else "log only"
        typer.echo(
            f"{r.started:%Y-%m-%d %H:%M:%S}  {r.execution_id}  {r.job:<24} {r.tenant:<12} "
            f"{r.state:<8} {r.code:<6} {_ms(r.duration_us):>10}  {traced}"
        )
    typer.echo(f"{len(rows)} of {page.total} executions")
    if page.next:
        typer.echo(f"next page: --cursor {page.next}")


def _print_tree(nodes: list[TraceNode], indent: int = 0) -> None:
    for n in nodes:
        pad = "  " * indent
        if n.kind == "block":
            typer.echo(f"{pad}{n.name}  {_ms(n.duration_us)}  {n.outcome}  (+{_ms(n.offset_us)})")
        else:
            cut = f" [truncated from {n.size} bytes]" if n.truncated else ""
            label = f"{n.kind} {n.name}".strip()
            typer.echo(f"{pad}{label}: {n.text[:200]}{cut}")
        _print_tree(n.children, indent + 1)


@app.command()
@clickhouse_options
def show(
    execution_id: Annotated[str, typer.Argument(help="An execution id.")],
    json: Json = False,
    *,
    target: ClickHouseTarget,
) -> None:
    """One execution's trace as a tree, and the executions it enqueued."""
    detail = _read(target,
                   lambda schema: execution_detail(schema, execution_id))  # fmt: skip
    if detail is None:
        typer.echo(f"error: no execution {execution_id}", err=True)
        raise typer.Exit(1)
    if json:
        return print_json(detail)
    row, tree, kids = detail.execution, detail.tree, detail.children
    typer.echo(
        f"{row.job} [{row.tenant}] {row.state} {row.code} {_ms(row.duration_us)} "
        f"attempt {row.attempt} started {row.started} parent {row.parent_id or '-'}"
    )
    _print_tree(tree, 1)
    for k in kids:
        typer.echo(f"  -> {k.execution_id} {k.job} {k.state} {_ms(k.duration_us)}")


@app.command()
@clickhouse_options
def log(
    since: Since = "24h",
    until: Until = None,
    job: Opt = None,
    tenant: Opt = None,
    state: Opt = None,
    event: Opt = None,
    tag: Annotated[str | None, typer.Option(help="name=value")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
    json: Json = False,
    *,
    target: ClickHouseTarget,
) -> None:
    """Job log events (enqueued, started, retried, finished, failed), newest first."""

    def plan(schema: TraceSchema) -> Plan[list[dict[str, Any]]]:
        start, end = time_range(since, until)
        f = JobLogFilter(start, end, job, tenant, state, event, None, parse_tag(tag), limit)
        return search_job_log(schema, f)

    rows = _read(target, plan)
    if json:
        return print_json(rows)
    for r in rows:
        typer.echo(
            f"{r['at']:%Y-%m-%d %H:%M:%S.%f}  {r['event']:<9} {r['job']:<24} {r['tenant']:<12} "
            f"attempt {r['attempt']}  {r['execution_id'] or r['ref']}  {r['args']}  {r['detail']}"
        )


# The same Typer app as ``tally trace-writer`` and ``python -m tally.traces``.
app.add_typer(writer_app, name="writer", help="One trace writer: run|check (= tally trace-writer).")
