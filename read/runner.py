"""The two plan runners: one on a sync clickhouse-connect client (scripts, the CLI), one on an
async client (the services: ``api/``, ``web/``, ``monitors/``). A runner executes each
statement a plan yields and its build step; it knows nothing of what is read."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from tally.read.plan import Answer, Build, Plan, Walk
from tally.read.queries import Sql

T = TypeVar("T")


def _send(client: Any, sql: Sql) -> Any:
    return client.query(sql.text, parameters=sql.parameters or None, settings=sql.settings)


def _attempt(client: Any, sql: Sql) -> Answer | Exception:
    try:
        return _send(client, sql)
    except Exception as exc:  # handed to the plan, which answers it or lets it propagate
        return exc


def run_sync(client: Any, plan: Plan[T]) -> T:
    """Run ``plan`` on a sync client; its result."""
    walk = Walk(plan)
    while walk.sql is not None:
        walk.feed(_attempt(client, walk.sql))
    outcome = walk.outcome
    return outcome.step() if isinstance(outcome, Build) else outcome  # type: ignore[return-value]


async def run_async(client: Any, plan: Plan[T]) -> T:
    """Run ``plan`` on an async client; a CPU-bound build runs off the event loop."""
    walk = Walk(plan)
    while walk.sql is not None:
        try:
            result: Answer | Exception = await _send(client, walk.sql)
        except Exception as exc:  # handed to the plan, as in run_sync
            result = exc
        walk.feed(result)
    outcome = walk.outcome
    if isinstance(outcome, Build):
        return await asyncio.to_thread(outcome.step)
    return outcome  # type: ignore[return-value]
