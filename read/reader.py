"""The read API: ``values``, ``series``, ``keys``, ``paths`` and ``sql``, sync and async.

    async with AsyncReader(ReadSettings.from_env()) as reader:
        s = await reader.series("calc", ["count", "codes.*"], ["success / count"],
                                granularity="1h", since="24h", top=5)
        s.aggregate("sum", slices=4); s.category(); s.to_pandas()

``Reader`` is the same API for scripts and notebooks, on a sync client. Every request is
validated before it reaches ClickHouse (:class:`ReadError` subclasses carry the reason), and
every value reaches ClickHouse as a bound parameter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

import msgspec
from clickhouse_connect.driver.exceptions import DatabaseError

from tally.read import key_index, queries
from tally.read.assemble import Ranked, SeriesPlan, build_series, build_values, check_size
from tally.read.distributions import (
    DEFAULT_QUANTILES,
    Distribution,
    GaugeSeries,
    build_distribution,
    build_gauge,
    check_quantiles,
    sketch_rows,
)
from tally.read.errors import ReadError, TooLarge, bad_sql
from tally.read.patterns import KeyPattern, PathWildcard, check_key
from tally.read.results import KeyInfo, PathInfo, Series, Values
from tally.read.schema import ServedSchema, from_tables
from tally.read.settings import ReadSettings
from tally.read.timerange import TimeLike, Window, resolve, window


class SqlResult(msgspec.Struct, frozen=True):
    """Columns, their ClickHouse types and rows of a read-only SQL query."""

    columns: list[str]
    types: list[str]
    rows: list[list[Any]]


def _utc(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _sql_settings(settings: ReadSettings) -> dict[str, Any]:
    return {
        "readonly": 2,
        "max_execution_time": int(settings.query_timeout_s),
        "max_result_rows": settings.max_sql_rows,
        "result_overflow_mode": "throw",
    }


class _Planning:
    """Validation and planning shared by both readers (no I/O)."""

    settings: ReadSettings
    _schema: ServedSchema | None

    def _window(
        self, schema: ServedSchema, granularity: str, since: TimeLike, until: TimeLike
    ) -> tuple[str, Window]:
        g = schema.check(granularity)
        return g, window(schema.calendar, g, since, until, max_buckets=self.settings.max_buckets)

    def _scan(self, schema: ServedSchema, key: str, g: str, w: Window) -> queries.Scan:
        return queries.Scan(self.settings.database, g, g in schema.stored, key, w.start, w.end)

    @staticmethod
    def _wildcard_sql(scan: queries.Scan, wildcard: PathWildcard, ranked: Ranked) -> queries.Sql:
        return queries.wildcard_points(scan, wildcard.regex, list(ranked.keep))

    def _values_sql(self, scan: queries.Scan) -> queries.Sql:
        return queries.points(scan, None, limit=self.settings.max_points + 1)

    def _check_values(self, rows: Sequence) -> Sequence:
        if len(rows) > self.settings.max_points:
            raise TooLarge(
                f"the key has more than the limit of {self.settings.max_points} points per"
                " response in this range; use a shorter range or a coarser granularity"
            )
        return rows

    def _keys_sql(
        self, schema: ServedSchema, pattern: str | None, since: TimeLike, until: TimeLike,
        limit: int,
    ) -> queries.Sql:  # fmt: skip
        if not schema.has_key_tables:
            raise ReadError("key discovery tables are missing: run `tally aggregator check`")
        kp = KeyPattern.parse(pattern)
        start, end = resolve(since, until)
        limit = max(1, min(limit, self.settings.max_keys))
        return queries.keys(self.settings.database, kp.like, kp.prefix, start, end, limit)


class AsyncReader(_Planning):
    """The read API on an async clickhouse-connect client (one per process, reused)."""

    def __init__(self, settings: ReadSettings | None = None) -> None:
        self.settings = settings or ReadSettings()
        self._client: Any = None
        self._schema = None

    async def __aenter__(self) -> AsyncReader:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect (raises if ClickHouse is unreachable)."""
        if self._client is None:
            from tally.read.connection import connect_async

            self._client = await connect_async(self.settings)

    async def close(self) -> None:
        """Close the client."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _query(self, sql: queries.Sql, settings: dict | None = None) -> Any:
        await self.start()
        return await self._client.query(sql.text, parameters=sql.parameters, settings=settings)

    async def schema(self, refresh: bool = False) -> ServedSchema:
        """Granularities, calendar and key tables, read from the database (cached)."""
        if self._schema is None or refresh:
            sql = queries.Sql(queries.SCHEMA, {"db": self.settings.database})
            self._schema = from_tables((await self._query(sql)).result_rows)
        return self._schema

    async def _served(self, granularity: str) -> ServedSchema:
        schema = await self.schema()
        try:
            schema.check(granularity)
        except ReadError:
            schema = await self.schema(refresh=True)
        return schema

    async def values(
        self, key: str, since: TimeLike = "24h", until: TimeLike = None, granularity: str = "1h"
    ) -> Values:
        """Every bucket of ``key`` in the range, path -> sum, ``{}`` when empty."""
        check_key(key)
        schema = await self._served(granularity)
        g, w = self._window(schema, granularity, since, until)
        sql = self._values_sql(self._scan(schema, key, g, w))
        rows = self._check_values((await self._query(sql)).result_rows)
        build = partial(build_values, key, w, schema.calendar.time_zone, rows)
        return await asyncio.to_thread(build)

    async def series(
        self,
        key: str,
        paths: Sequence[str] = (),
        expressions: Sequence[str] = (),
        since: TimeLike = "24h",
        until: TimeLike = None,
        granularity: str = "1h",
        top: int | None = None,
    ) -> Series:
        """Rows for paths, wildcards (top-N + other) and expressions over aligned buckets."""
        check_key(key)
        plan = SeriesPlan.build(paths, expressions, top)
        schema = await self._served(granularity)
        g, w = self._window(schema, granularity, since, until)
        scan = self._scan(schema, key, g, w)
        ranked = [
            Ranked.of(
                (await self._query(queries.ranking(scan, c.regex, plan.rank_limit))).result_rows
            )
            for c in plan.wildcards
        ]
        check_size(plan, ranked, len(w.buckets), self.settings.max_points)
        rows = (
            (await self._query(queries.points(scan, plan.paths))).result_rows if plan.paths else []
        )
        parts = [
            (
                r,
                (await self._query(self._wildcard_sql(scan, c, r))).result_rows
                if r.matches
                else [],
            )
            for c, r in zip(plan.wildcards, ranked, strict=True)
        ]
        build = partial(build_series, key, w, schema.calendar.time_zone, plan, rows, parts)
        return await asyncio.to_thread(build)  # CPU-bound: off the event loop

    async def quantiles(
        self,
        key: str,
        path: str,
        qs: Sequence[float] = DEFAULT_QUANTILES,
        since: TimeLike = "24h",
        until: TimeLike = None,
        granularity: str = "1h",
    ) -> Distribution:
        """Quantiles ``qs`` of the distribution at ``path`` per bucket (relative error 1%)."""
        check_key(key)
        qs = check_quantiles(qs)
        schema = await self._served(granularity)
        g, w = self._window(schema, granularity, since, until)
        rows = (await self._query(sketch_rows(self.settings.database, g, key, path, w))).result_rows
        build = partial(build_distribution, key, path, w, schema.calendar.time_zone, qs, rows)
        return await asyncio.to_thread(build)

    async def gauge(
        self,
        key: str,
        path: str,
        since: TimeLike = "24h",
        until: TimeLike = None,
        granularity: str = "1h",
    ) -> GaugeSeries:
        """The gauge at ``path`` per bucket: last reading by time, min and max."""
        check_key(key)
        schema = await self._served(granularity)
        g, w = self._window(schema, granularity, since, until)
        rows = (await self._query(sketch_rows(self.settings.database, g, key, path, w))).result_rows
        build = partial(build_gauge, key, path, w, schema.calendar.time_zone, rows)
        return await asyncio.to_thread(build)

    async def keys(
        self,
        pattern: str | None = None,
        since: TimeLike = "7d",
        until: TimeLike = None,
        limit: int = 1000,
    ) -> list[KeyInfo]:
        """Keys matching ``pattern`` (``*`` = any run) written in the range, newest first."""
        schema = await self.schema()
        if not schema.has_key_tables:
            schema = await self.schema(refresh=True)
        sql = self._keys_sql(schema, pattern, since, until, limit)
        return [KeyInfo(k, _utc(t)) for k, t in (await self._query(sql)).result_rows]

    async def key_page(
        self,
        search: str | None = None,
        since: TimeLike = "30d",
        until: TimeLike = None,
        after: str | None = None,
        limit: int = 100,
    ) -> key_index.KeyPage:
        """Keys matching ``search`` (a prefix, or a pattern with ``*``), job keys first; one
        page after the cursor ``after``, the count of all matches and the next cursor."""
        schema = await self.schema()
        if not schema.has_key_tables:
            schema = await self.schema(refresh=True)
        if not schema.has_key_tables:
            raise ReadError("key discovery tables are missing: run `tally aggregator check`")
        kp = key_index.pattern(search)
        start, end = resolve(since, until)
        limit = max(1, min(limit, self.settings.max_keys))
        db = self.settings.database
        rows = (await self._query(key_index.page_sql(db, kp, start, end, after, limit))).result_rows
        total = (await self._query(key_index.count_sql(db, kp, start, end))).result_rows[0][0]
        keys = [KeyInfo(k, _utc(t)) for k, t in rows[:limit]]
        return key_index.KeyPage(
            keys, int(total), key_index.next_cursor([k for k, _ in rows], limit)
        )

    async def paths(self, key: str, limit: int = 10_000) -> list[PathInfo]:
        """The paths ever written to ``key`` (within the key tables' TTL)."""
        check_key(key)
        sql = queries.key_paths(self.settings.database, key, max(1, limit))
        return [PathInfo(p, _utc(t)) for p, t in (await self._query(sql)).result_rows]

    async def path_kinds(self, key: str, limit: int = 10_000) -> dict[str, str]:
        """Paths of ``key`` that are ``distribution`` or ``gauge`` (every other is summed)."""
        check_key(key)
        sql = queries.path_kinds(self.settings.database, key, max(1, limit))
        rows = (await self._query(sql)).result_rows
        return {p: "distribution" if dist else "gauge" for p, dist in rows}

    async def sql(self, text: str, parameters: dict[str, Any] | None = None) -> SqlResult:
        """Run read-only SQL (``readonly=2``, time and row limits); for authorized users."""
        await self.start()
        result = await self._client.query(
            text, parameters=parameters or None, settings=_sql_settings(self.settings)
        )
        return SqlResult(
            list(result.column_names),
            [t.name for t in result.column_types],
            [list(r) for r in result.result_rows],
        )


class Reader(_Planning):
    """The read API on a sync client, for scripts, notebooks and the CLI."""

    def __init__(self, settings: ReadSettings | None = None) -> None:
        self.settings = settings or ReadSettings()
        self._client: Any = None
        self._schema = None

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

            self._client = connect_sync(self.settings)
        return self._client

    def _query(self, sql: queries.Sql, settings: dict | None = None) -> Any:
        return self._connected().query(sql.text, parameters=sql.parameters, settings=settings)

    def schema(self, refresh: bool = False) -> ServedSchema:
        """Granularities, calendar and key tables, read from the database (cached)."""
        if self._schema is None or refresh:
            sql = queries.Sql(queries.SCHEMA, {"db": self.settings.database})
            self._schema = from_tables(self._query(sql).result_rows)
        return self._schema

    def _served(self, granularity: str) -> ServedSchema:
        schema = self.schema()
        try:
            schema.check(granularity)
        except ReadError:
            schema = self.schema(refresh=True)
        return schema

    def values(
        self, key: str, since: TimeLike = "24h", until: TimeLike = None, granularity: str = "1h"
    ) -> Values:
        """Every bucket of ``key`` in the range, path -> sum, ``{}`` when empty."""
        check_key(key)
        schema = self._served(granularity)
        g, w = self._window(schema, granularity, since, until)
        rows = self._check_values(
            self._query(self._values_sql(self._scan(schema, key, g, w))).result_rows
        )
        return build_values(key, w, schema.calendar.time_zone, rows)

    def series(
        self,
        key: str,
        paths: Sequence[str] = (),
        expressions: Sequence[str] = (),
        since: TimeLike = "24h",
        until: TimeLike = None,
        granularity: str = "1h",
        top: int | None = None,
    ) -> Series:
        """Rows for paths, wildcards (top-N + other) and expressions over aligned buckets."""
        check_key(key)
        plan = SeriesPlan.build(paths, expressions, top)
        schema = self._served(granularity)
        g, w = self._window(schema, granularity, since, until)
        scan = self._scan(schema, key, g, w)
        ranked = [
            Ranked.of(self._query(queries.ranking(scan, c.regex, plan.rank_limit)).result_rows)
            for c in plan.wildcards
        ]
        check_size(plan, ranked, len(w.buckets), self.settings.max_points)
        rows = self._query(queries.points(scan, plan.paths)).result_rows if plan.paths else []
        parts = [
            (r, self._query(self._wildcard_sql(scan, c, r)).result_rows if r.matches else [])
            for c, r in zip(plan.wildcards, ranked, strict=True)
        ]
        return build_series(key, w, schema.calendar.time_zone, plan, rows, parts)

    def quantiles(
        self,
        key: str,
        path: str,
        qs: Sequence[float] = DEFAULT_QUANTILES,
        since: TimeLike = "24h",
        until: TimeLike = None,
        granularity: str = "1h",
    ) -> Distribution:
        """Quantiles ``qs`` of the distribution at ``path`` per bucket (relative error 1%)."""
        check_key(key)
        qs = check_quantiles(qs)
        schema = self._served(granularity)
        g, w = self._window(schema, granularity, since, until)
        rows = self._query(sketch_rows(self.settings.database, g, key, path, w)).result_rows
        return build_distribution(key, path, w, schema.calendar.time_zone, qs, rows)

    def gauge(
        self,
        key: str,
        path: str,
        since: TimeLike = "24h",
        until: TimeLike = None,
        granularity: str = "1h",
    ) -> GaugeSeries:
        """The gauge at ``path`` per bucket: last reading by time, min and max."""
        check_key(key)
        schema = self._served(granularity)
        g, w = self._window(schema, granularity, since, until)
        rows = self._query(sketch_rows(self.settings.database, g, key, path, w)).result_rows
        return build_gauge(key, path, w, schema.calendar.time_zone, rows)

    def keys(
        self,
        pattern: str | None = None,
        since: TimeLike = "7d",
        until: TimeLike = None,
        limit: int = 1000,
    ) -> list[KeyInfo]:
        """Keys matching ``pattern`` (``*`` = any run) written in the range, newest first."""
        schema = self.schema()
        if not schema.has_key_tables:
            schema = self.schema(refresh=True)
        sql = self._keys_sql(schema, pattern, since, until, limit)
        return [KeyInfo(k, _utc(t)) for k, t in self._query(sql).result_rows]

    def paths(self, key: str, limit: int = 10_000) -> list[PathInfo]:
        """The paths ever written to ``key`` (within the key tables' TTL)."""
        check_key(key)
        sql = queries.key_paths(self.settings.database, key, max(1, limit))
        return [PathInfo(p, _utc(t)) for p, t in self._query(sql).result_rows]

    def sql(self, text: str, parameters: dict[str, Any] | None = None) -> SqlResult:
        """Run read-only SQL (``readonly=2``, time and row limits); a statement ClickHouse
        refuses as written raises :class:`BadSql`."""
        try:
            result = self._connected().query(
                text, parameters=parameters or None, settings=_sql_settings(self.settings)
            )
        except DatabaseError as exc:
            raise bad_sql(exc) or exc from None
        return SqlResult(
            list(result.column_names),
            [t.name for t in result.column_types],
            [list(r) for r in result.result_rows],
        )
