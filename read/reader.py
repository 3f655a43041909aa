"""The read API: ``values``, ``series``, ``keys``, ``paths`` and ``sql``, sync and async.

    async with AsyncReader(ReadSettings.from_env()) as reader:
        s = await reader.series("calc", ["count", "codes.*"], ["success / count"],
                                granularity="1h", since="24h", top=5)
        s.aggregate("sum", slices=4); s.category(); s.to_pandas()

``Reader`` is the same API for scripts and notebooks, on a sync client. Both are thin: each
method runs the ``ReadPlanner`` plan of the same name (``read/planner.py``: the request is
checked before anything reaches ClickHouse, :class:`ReadError` subclasses carry the reason,
and every value is a bound parameter) on the reader's client; ``run`` runs any other plan
(trace reads, job queries).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from tally.clickhouse.failover import ReplicaCursor, unreachable
from tally.read.plan import Plan
from tally.read.planner import ReadPlanner
from tally.read.runner import run_async, run_sync
from tally.read.settings import ReadSettings

P = ParamSpec("P")
T = TypeVar("T")
Planned = Callable[Concatenate[ReadPlanner, P], Plan[T]]


def _sync(plan: Planned[P, T]) -> Callable[Concatenate[Reader, P], T]:
    """A ``Reader`` method running the planner's ``plan`` (its signature and docstring)."""

    @functools.wraps(plan)
    def read(self: Reader, *args: P.args, **kwargs: P.kwargs) -> T:
        return self.run(plan(self.plans, *args, **kwargs))

    return read


def _async(plan: Planned[P, T]) -> Callable[Concatenate[AsyncReader, P], Awaitable[T]]:
    """An ``AsyncReader`` method running the planner's ``plan``."""

    @functools.wraps(plan)
    async def read(self: AsyncReader, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self.run(plan(self.plans, *args, **kwargs))

    return read


class AsyncReader:
    """The read API on an async clickhouse-connect client (one per process, reused)."""

    def __init__(self, settings: ReadSettings | None = None) -> None:
        self.settings = settings or ReadSettings()
        self.plans = ReadPlanner(self.settings)
        self._client: Any = None
        self._replicas = ReplicaCursor(self.settings.clickhouse.urls)

    async def __aenter__(self) -> AsyncReader:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect (raises if ClickHouse is unreachable)."""
        if self._client is None:
            from tally.read.connection import connect_async

            self._client = await connect_async(self.settings, self._replicas)

    async def close(self) -> None:
        """Close the client."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def run(self, plan: Plan[T]) -> T:
        """Run ``plan`` on this reader's client (CPU-bound builds off the event loop)."""
        await self.start()
        try:
            return await run_async(self._client, plan)
        except Exception as exc:
            if unreachable(exc):  # the next request connects again, to the next replica
                await self.close()
                self._replicas.lost()
            raise

    schema = _async(ReadPlanner.schema)
    settled = _async(ReadPlanner.settled)
    values = _async(ReadPlanner.values)
    series = _async(ReadPlanner.series)
    quantiles = _async(ReadPlanner.quantiles)
    gauge = _async(ReadPlanner.gauge)
    keys = _async(ReadPlanner.keys)
    key_page = _async(ReadPlanner.key_page)
    paths = _async(ReadPlanner.paths)
    path_kinds = _async(ReadPlanner.path_kinds)
    sql = _async(ReadPlanner.sql)


class Reader:
    """The read API on a sync client, for scripts, notebooks and the CLI."""

    def __init__(self, settings: ReadSettings | None = None) -> None:
        self.settings = settings or ReadSettings()
        self.plans = ReadPlanner(self.settings)
        self._client: Any = None
        self._replicas = ReplicaCursor(self.settings.clickhouse.urls)

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the client."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def _connected(self) -> Any:
        if self._client is None:
            from tally.read.connection import connect_sync

            self._client = connect_sync(self.settings, self._replicas)
        return self._client

    def run(self, plan: Plan[T]) -> T:
        """Run ``plan`` on this reader's client (connects on first use)."""
        try:
            return run_sync(self._connected(), plan)
        except Exception as exc:
            if unreachable(exc):  # the next request connects again, to the next replica
                self.close()
                self._replicas.lost()
            raise

    schema = _sync(ReadPlanner.schema)
    settled = _sync(ReadPlanner.settled)
    values = _sync(ReadPlanner.values)
    series = _sync(ReadPlanner.series)
    quantiles = _sync(ReadPlanner.quantiles)
    gauge = _sync(ReadPlanner.gauge)
    keys = _sync(ReadPlanner.keys)
    key_page = _sync(ReadPlanner.key_page)
    paths = _sync(ReadPlanner.paths)
    path_kinds = _sync(ReadPlanner.path_kinds)
    sql = _sync(ReadPlanner.sql)
