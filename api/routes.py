"""``/api/v1`` handlers: keys, paths, values, series, SQL; thin shells over :class:`AsyncReader`."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery, JSONBody, QueryParameter

from tally.api.auth import SCOPE_SQL
from tally.api.coalesce import Coalescer
from tally.api.sql import SqlRunner
from tally.read import (
    AsyncReader,
    Distribution,
    GaugeSeries,
    KeyInfo,
    PathInfo,
    Series,
    Slice,
    SqlResult,
    Values,
)
from tally.read.key_index import KeyPage
from tally.read.results import CategoryItem
from tally.schemas.granularity import DEFAULT_GRANULARITIES

Reader = NamedDependency[AsyncReader]
UserSql = NamedDependency[SqlRunner]
Shared = NamedDependency[Coalescer]
Since = Annotated[
    str, QueryParameter(description="Start: ISO time, unix seconds or a duration ago (24h, 7d)")
]
Until = Annotated[
    str | None, QueryParameter(description="End (exclusive): ISO time, unix seconds or 'now'")
]
AsOf = Annotated[
    str | None,
    QueryParameter(
        description="Read as of this time: nothing at or after it is counted and the bucket"
        " containing it holds only its part before it (summed from stored days, hours and"
        " minutes, floored to the minute). An ISO time, unix seconds, or 'settled' (the start"
        " of the minute at least settle_s ago, which every event before it has reached: see"
        " /settled). Default: none, everything written so far (the bucket in progress keeps"
        " growing), as before",
    ),
]
Granularity = Annotated[
    str,
    QueryParameter(description=f"Bucket size: {' '.join(DEFAULT_GRANULARITIES)} (as served)"),
]


class Granularities(msgspec.Struct, frozen=True):
    """What the database serves."""

    granularities: list[str]
    stored: list[str]
    time_zone: str
    week_start: str


class SeriesResponse(msgspec.Struct, frozen=True):
    """A series, with its aggregation per slice and its category totals when asked."""

    series: Series
    aggregate: list[Slice] | None = None
    category: list[CategoryItem] | None = None


class SqlRequest(msgspec.Struct, frozen=True):
    """Read-only SQL with ClickHouse ``{name:Type}`` parameters."""

    query: str
    parameters: dict[str, Any] = {}


class Settled(msgspec.Struct, frozen=True):
    """The settled time: pass it as ``as_of`` to every read of one page so they all agree."""

    as_of: int
    settle_s: float


class Health(msgspec.Struct, frozen=True):
    status: str


def _respond(s: Series, aggregate: str | None, slices: int, category: bool) -> SeriesResponse:
    """The series with its slices and category totals (CPU-bound: run off the event loop)."""
    return SeriesResponse(
        s, s.aggregate(aggregate, slices) if aggregate else None, s.category() if category else None
    )


class ReadController(Controller):
    """Reads, opened by the read token (or the SQL token)."""

    path = "/api/v1"
    tags = ["read"]

    @get("/health", exclude_from_auth=True, summary="Liveness (no token needed)")
    async def health(self) -> Health:
        return Health("ok")

    @get("/settled", summary="The time every read of one page should be as of (as_of)")
    async def settled(self, reader: Reader) -> Settled:
        return Settled(await reader.settled(), reader.settings.settle_s)

    @get("/granularities", summary="Granularities, time zone and week start served")
    async def granularities(self, reader: Reader) -> Granularities:
        schema = await reader.schema(refresh=True)
        return Granularities(
            list(schema.granularities),
            sorted(schema.stored),
            schema.calendar.time_zone,
            schema.calendar.week_start,
        )

    @get("/keys", summary="Keys matching a pattern with writes in the range, newest first")
    async def keys(
        self,
        reader: Reader,
        coalescer: Shared,
        pattern: Annotated[
            str | None, QueryParameter(description="'*' matches any run, e.g. event::schedule::*")
        ] = None,
        since: Since = "7d",
        until: Until = None,
        limit: Annotated[int, QueryParameter(ge=1, le=10_000)] = 1000,
    ) -> list[KeyInfo]:
        return await coalescer.once(reader.keys, pattern, since, until, limit)

    @get("/key-index", summary="Keys by prefix or pattern, job keys first: a page, total, next")
    async def key_index(
        self,
        reader: Reader,
        search: Annotated[
            str | None, QueryParameter(description="A prefix (event::) or a pattern (*::acme)")
        ] = None,
        since: Since = "30d",
        until: Until = None,
        cursor: Annotated[str | None, QueryParameter(description="A page's `next`")] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=10_000)] = 100,
    ) -> KeyPage:
        return await reader.key_page(search, since, until, cursor or None, limit)

    @get("/paths", summary="Paths of one key with their last write")
    async def paths(
        self,
        reader: Reader,
        key: FromQuery[str],
        limit: Annotated[int, QueryParameter(ge=1, le=100_000)] = 10_000,
    ) -> list[PathInfo]:
        return await reader.paths(key, limit)

    @get("/values", summary="Every bucket of a key in the range (path -> sum; {} when empty)")
    async def values(
        self,
        reader: Reader,
        coalescer: Shared,
        key: FromQuery[str],
        since: Since = "24h",
        until: Until = None,
        granularity: Granularity = "1h",
        as_of: AsOf = None,
    ) -> Values:
        return await coalescer.once(reader.values, key, since, until, granularity, as_of)

    @get("/series", summary="Paths, wildcards (top-N + other) and expressions over buckets")
    async def series(
        self,
        reader: Reader,
        coalescer: Shared,
        key: FromQuery[str],
        path: Annotated[
            list[str] | None,
            QueryParameter(description="Repeatable; codes.* and tenants.*.count expand"),
        ] = None,
        expression: Annotated[
            list[str] | None, QueryParameter(description="Repeatable, e.g. success / count")
        ] = None,
        since: Since = "24h",
        until: Until = None,
        granularity: Granularity = "1h",
        top: Annotated[
            int | None, QueryParameter(ge=1, description="Keep N matches per wildcard")
        ] = None,
        aggregate: Annotated[
            str | None, QueryParameter(description="sum, mean, min, max or last per slice")
        ] = None,
        slices: Annotated[int, QueryParameter(ge=1, le=10_000)] = 1,
        category: Annotated[bool, QueryParameter(description="Add per-row totals")] = False,
        as_of: AsOf = None,
    ) -> SeriesResponse:
        paths, expressions = tuple(path or ()), tuple(expression or ())
        s = await coalescer.once(
            reader.series, key, paths, expressions, since, until, granularity, top, as_of
        )
        return await asyncio.to_thread(_respond, s, aggregate, slices, category)


class KindsController(Controller):
    """Distributions (quantiles) and gauges, opened by the read token."""

    path = "/api/v1"
    tags = ["read"]

    @get("/quantiles", summary="Quantiles of a distribution path per bucket (within 1%)")
    async def quantiles(
        self,
        reader: Reader,
        coalescer: Shared,
        key: FromQuery[str],
        path: FromQuery[str],
        q: Annotated[
            list[float] | None,
            QueryParameter(description="Repeatable, in [0, 1]; default 0.5 0.9 0.95 0.99 0.999"),
        ] = None,
        since: Since = "24h",
        until: Until = None,
        granularity: Granularity = "1h",
        as_of: AsOf = None,
    ) -> Distribution:
        qs = tuple(q or (0.5, 0.9, 0.95, 0.99, 0.999))
        return await coalescer.once(
            reader.quantiles, key, path, qs, since, until, granularity, as_of
        )

    @get("/gauge", summary="A gauge path per bucket: last reading by time, min, max")
    async def gauge(
        self,
        reader: Reader,
        coalescer: Shared,
        key: FromQuery[str],
        path: FromQuery[str],
        since: Since = "24h",
        until: Until = None,
        granularity: Granularity = "1h",
        as_of: AsOf = None,
    ) -> GaugeSeries:
        return await coalescer.once(reader.gauge, key, path, since, until, granularity, as_of)


class SqlController(Controller):
    """Read-only SQL, opened by the SQL token only."""

    path = "/api/v1"
    tags = ["sql"]

    @post("/sql", opt={"scope": SCOPE_SQL}, status_code=200, summary="Read-only SQL")
    async def sql(self, sql_runner: UserSql, data: JSONBody[SqlRequest]) -> SqlResult:
        return await sql_runner.run(data.query, data.parameters)
