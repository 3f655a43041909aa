"""Reading traces back, as plans (``tally.read.plan``): executions of a bucket, one execution
with its trace tree and children, the job log, a key's tenants.

Run them with the read API's runners: ``await reader.run(execution_detail(schema, id))`` on an
``AsyncReader`` (the API and pages), ``Reader.run`` (the CLI), ``run_sync(client, plan)`` on any
sync clickhouse-connect client. Every value is a bound parameter (``{name:Type}``); table names
come from ``TraceSchema``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from tally.read import cursor
from tally.read import queries as read_queries
from tally.read.errors import BadRange
from tally.read.patterns import KeyPattern
from tally.read.plan import Plan
from tally.read.queries import Sql
from tally.traces.ddl import EXECUTIONS, JOB_LOG, LINES, TraceSchema

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ExecutionRow:
    """One row of the execution index."""

    execution_id: str
    parent_id: str
    ref: str
    job: str
    tenant: str
    key: str
    state: str
    code: str
    error: str
    attempt: int
    started: datetime
    duration_us: int
    tags: dict[str, str]
    sampled: str
    lines: int
    dropped: int
    error_message: str = ""
    error_traceback: str = ""
    args: str = ""


EXECUTION_FIELDS = ", ".join(f.name for f in fields(ExecutionRow))


@dataclass
class TraceNode:
    """A trace line with the lines nested under it (blocks have children)."""

    seq: int
    kind: str
    name: str
    offset_us: int
    duration_us: int
    outcome: str
    text: str
    truncated: bool
    size: int
    children: list[TraceNode] = field(default_factory=list)


class ExecutionDetail(msgspec.Struct, frozen=True):
    """One execution, its trace tree and the executions it enqueued or called."""

    execution: ExecutionRow
    tree: list[TraceNode]
    children: list[ExecutionRow]


@dataclass(frozen=True)
class ExecutionFilter:
    """A dashboard bucket and optional narrowing: key, [start, end), state, tenant, code, job.

    ``key`` is the tracker's key (``event::calc``) or a tenant key (``event::calc::acme``);
    ``tag`` is a ``(name, value)`` pair; ``cursor`` a page's ``next`` (rows strictly after it);
    ``message``: text the error's type or message contains (case-insensitive).
    """

    key: str
    start: datetime
    end: datetime
    state: str | None = None
    tenant: str | None = None
    code: str | None = None
    job: str | None = None
    sampled_only: bool = False
    limit: int = 100
    tag: tuple[str, str] | None = None
    cursor: str | None = None
    message: str | None = None


class ExecutionPage(msgspec.Struct, frozen=True):
    """One page of a bucket's executions: ``total`` in the bucket, ``next`` cursor or None."""

    executions: list[ExecutionRow]
    total: int
    next: str | None


@dataclass(frozen=True)
class JobLogFilter:
    """Job log search: any of job, tenant, state, event, tag (name, value), time range."""

    start: datetime
    end: datetime
    job: str | None = None
    tenant: str | None = None
    state: str | None = None
    event: str | None = None
    execution_id: str | None = None
    tag: tuple[str, str] | None = None
    limit: int = 200


JOB_LOG_FIELDS = (
    "at, execution_id, parent_id, ref, job, tenant, key, event, state, attempt, args, detail, tags"
)


def parse_tag(tag: str | None) -> tuple[str, str] | None:
    """``name=value`` as a pair (None for none; :class:`BadRange` without ``=`` or a name)."""
    if not tag:
        return None
    name, sep, value = tag.partition("=")
    if not sep or not name:
        raise BadRange("tag must be name=value")
    return name, value


def _micros(at: datetime) -> int:
    at = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return (at - EPOCH) // timedelta(microseconds=1)


def _narrow(
    f: ExecutionFilter | JobLogFilter, names: tuple[str, ...], where: list[str], params: dict
) -> None:
    """``<name> = {<name>:String}`` for each of ``names`` that ``f`` sets, and its tag."""
    for name in names:
        value = getattr(f, name)
        if value is not None:
            where.append(f"{name} = {{{name}:String}}")
            params[name] = value
    if f.tag is not None:
        where.append("tags[{tag_name:String}] = {tag_value:String}")
        params["tag_name"], params["tag_value"] = f.tag


def _execution_where(f: ExecutionFilter) -> tuple[list[str], dict[str, object]]:
    # A dashboard's tenant key ``<key>::<tenant>`` means the runs of ``<key>`` for that tenant;
    # a run a decorator adopted from a framework hook is listed under either one's key.
    base, _, tenant_part = f.key.rpartition("::")
    params: dict[str, object] = {"key": f.key, "start": f.start, "end": f.end}
    match = "(key = {key:String} OR hook_key = {key:String})"
    if base and tenant_part:
        match = (
            "(key = {key:String} OR hook_key = {key:String} OR ((key = {base:String}"
            " OR hook_key = {base:String}) AND tenant = {key_tenant:String}))"
        )
        params["base"], params["key_tenant"] = base, tenant_part
    where = [match, "started >= {start:DateTime64(6)}", "started < {end:DateTime64(6)}"]
    _narrow(f, ("state", "tenant", "code", "job"), where, params)
    if f.sampled_only:
        where.append("sampled != ''")
    if f.message:
        where.append(
            "(positionCaseInsensitiveUTF8(error_message, {message:String}) > 0"
            " OR positionCaseInsensitiveUTF8(error, {message:String}) > 0)"
        )
        params["message"] = f.message
    return where, params


def page_executions(
    schema: TraceSchema, f: ExecutionFilter, count: bool = True
) -> Plan[ExecutionPage]:
    """One page of the bucket's executions, newest first, keyset-paged on ``(started,
    execution_id)``; ``total`` is -1 unless ``count``."""
    where, params = _execution_where(f)
    table = schema.table(EXECUTIONS)
    total = -1
    if count:
        sql = Sql(f"SELECT count() FROM {table} WHERE {' AND '.join(where)}", dict(params))
        total = int((yield sql).result_rows[0][0])
    if f.cursor is not None:
        at, after = cursor.decode(f.cursor, (int, str))
        where.append(
            "(started, execution_id) < (fromUnixTimestamp64Micro({c_at:Int64}, 'UTC'),"
            " {c_id:String})"
        )
        params["c_at"], params["c_id"] = at, after
    limit = max(1, min(int(f.limit), 10_000))
    params["limit"] = limit + 1  # one more tells whether there is a next page
    text = (
        f"SELECT {EXECUTION_FIELDS} FROM {table} WHERE {' AND '.join(where)}"
        " ORDER BY started DESC, execution_id DESC LIMIT {limit:UInt32}"
    )
    rows = [ExecutionRow(*row) for row in (yield Sql(text, params)).result_rows]
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if more else None
    following = cursor.encode([_micros(last.started), last.execution_id]) if last else None
    return ExecutionPage(rows, total, following)


def list_executions(schema: TraceSchema, f: ExecutionFilter) -> Plan[list[ExecutionRow]]:
    """Executions in the bucket, newest first: one page, not counted."""
    return (yield from page_executions(schema, f, count=False)).executions


def get_execution(schema: TraceSchema, execution_id: str) -> Plan[ExecutionRow | None]:
    """One execution by id (bloom filter on ``execution_id``)."""
    text = (
        f"SELECT {EXECUTION_FIELDS} FROM {schema.table(EXECUTIONS)}"
        " WHERE execution_id = {id:String} LIMIT 1"
    )
    rows = (yield Sql(text, {"id": execution_id})).result_rows
    return ExecutionRow(*rows[0]) if rows else None


def children(schema: TraceSchema, execution_id: str) -> Plan[list[ExecutionRow]]:
    """Executions whose parent is ``execution_id`` (the jobs this run enqueued or called)."""
    text = (
        f"SELECT {EXECUTION_FIELDS} FROM {schema.table(EXECUTIONS)}"
        " WHERE parent_id = {id:String} ORDER BY started LIMIT 10000"
    )
    return [ExecutionRow(*r) for r in (yield Sql(text, {"id": execution_id})).result_rows]


def trace_lines(
    schema: TraceSchema, execution_id: str, started: datetime | None = None
) -> Plan[list[tuple]]:
    """The raw lines of one execution in ``seq`` order (``started`` narrows to its partition)."""
    where = "execution_id = {id:String}"
    params: dict[str, object] = {"id": execution_id}
    if started is not None:
        where += " AND started = {started:DateTime64(6)}"
        params["started"] = started
    text = (
        "SELECT seq, parent, depth, kind, name, offset_us, duration_us, outcome, text,"
        f" truncated, size FROM {schema.table(LINES)} WHERE {where} ORDER BY seq"
    )
    return list((yield Sql(text, params)).result_rows)


def build_tree(lines: list[tuple]) -> list[TraceNode]:
    """Nest lines (``seq, parent, depth, kind, name, ...``) under their blocks."""
    nodes: dict[int, TraceNode] = {}
    roots: list[TraceNode] = []
    for seq, parent, _depth, kind, name, offset, duration, outcome, text, cut, size in lines:
        node = TraceNode(seq, kind, name, offset, duration, outcome, text, bool(cut), size)
        nodes[seq] = node
        holder = nodes.get(parent)
        (holder.children if holder is not None else roots).append(node)
    return roots


def execution_tree(
    schema: TraceSchema, execution_id: str
) -> Plan[tuple[ExecutionRow, list[TraceNode]] | None]:
    """An execution and its trace as a tree, or None if unknown."""
    row = yield from get_execution(schema, execution_id)
    if row is None:
        return None
    return row, build_tree((yield from trace_lines(schema, execution_id, row.started)))


def execution_detail(schema: TraceSchema, execution_id: str) -> Plan[ExecutionDetail | None]:
    """An execution, its trace as a tree and its children; None if unknown. The one place
    the API, the pages and the CLI get "one execution" from."""
    found = yield from execution_tree(schema, execution_id)
    if found is None:
        return None
    row, tree = found
    return ExecutionDetail(row, tree, (yield from children(schema, execution_id)))


def search_job_log(schema: TraceSchema, f: JobLogFilter) -> Plan[list[dict[str, Any]]]:
    """Job-log events matching ``f``, newest first, as dicts."""
    where = ["at >= {start:DateTime64(6)}", "at < {end:DateTime64(6)}"]
    params: dict[str, object] = {"start": f.start, "end": f.end}
    _narrow(f, ("job", "tenant", "state", "event", "execution_id"), where, params)
    params["limit"] = max(1, min(int(f.limit), 10_000))
    text = (
        f"SELECT {JOB_LOG_FIELDS} FROM {schema.table(JOB_LOG)}"
        f" WHERE {' AND '.join(where)} ORDER BY at DESC LIMIT {{limit:UInt32}}"
    )
    names = [n.strip() for n in JOB_LOG_FIELDS.split(",")]
    return [dict(zip(names, row, strict=True)) for row in (yield Sql(text, params)).result_rows]


def key_tenants(schema: TraceSchema, key: str, start: datetime, end: datetime) -> Plan[list[str]]:
    """Tenants of ``key`` in [start, end): its ``<key>::<tenant>`` keys (key discovery) and
    the tenants in its execution index, sorted; for the pages' tenant picker."""
    found: set[str] = set()
    head = f"{key}::"
    pattern = KeyPattern.parse(f"{key}::*")
    sql = read_queries.keys(
        schema.database, pattern.like, pattern.prefix, int(start.timestamp()),
        int(end.timestamp()) + 1, 1000,
    )  # fmt: skip
    try:
        rows = (yield sql).result_rows
    except Exception:  # no key tables (a traces-only install): the index only
        rows = []
    found.update(k[len(head) :] for k, _ in rows if "::" not in k[len(head) :])
    text = (
        f"SELECT DISTINCT tenant FROM {schema.table(EXECUTIONS)}"
        " WHERE (key = {key:String} OR hook_key = {key:String})"
        " AND started >= {start:DateTime64(6)} AND started < {end:DateTime64(6)} LIMIT 1000"
    )
    index = Sql(text, {"key": key, "start": start, "end": end})
    found.update(t for (t,) in (yield index).result_rows if t)
    return sorted(found)
