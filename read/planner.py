"""Every read of the rollups as a plan (``read/plan.py``): request checked, statements, build.

``ReadPlanner`` holds what plans need beyond their arguments: the settings (database, limits)
and the served schema, cached between plans and read again when a plan finds it lacks a
granularity or the key tables. Every value reaches ClickHouse as a bound parameter.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

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
from tally.read.patterns import KeyPattern, check_key
from tally.read.plan import Answer, Build, Plan
from tally.read.results import KeyInfo, PathInfo, Series, SqlResult, Values
from tally.read.schema import ServedSchema, from_tables
from tally.read.settings import ReadSettings
from tally.read.settled import Cut, as_of_time, check_kept, cut, settled_time
from tally.read.timerange import TimeLike, resolve, to_unix, window

# A step of a plan that hands its caller an intermediate value rather than the result.
Step = Generator[queries.Sql, Answer, Any]


def _utc(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class ReadPlanner:
    """The plans of the read API for one database and its limits."""

    def __init__(self, settings: ReadSettings) -> None:
        self.settings = settings
        self._schema: ServedSchema | None = None

    def schema(self, refresh: bool = False) -> Plan[ServedSchema]:
        """Granularities, calendar and key tables, read from the database (cached)."""
        if self._schema is None or refresh:
            sql = queries.Sql(queries.SCHEMA, {"db": self.settings.database})
            self._schema = from_tables((yield sql).result_rows)
        return self._schema

    def _served(self, granularity: str) -> Step:
        """The schema, read again when the cached one does not serve ``granularity``."""
        schema = yield from self.schema()
        try:
            schema.check(granularity)
        except ReadError:
            schema = yield from self.schema(refresh=True)
        return schema

    def _key_tables(self) -> Step:
        """The schema, read again when the cached one has no key tables; ReadError if none."""
        schema = yield from self.schema()
        if not schema.has_key_tables:
            schema = yield from self.schema(refresh=True)
        if not schema.has_key_tables:
            raise ReadError("key discovery tables are missing: run `tally aggregator check`")
        return schema

    def _window(
        self, key: str, granularity: str, since: TimeLike, until: TimeLike, as_of: TimeLike
    ) -> Step:
        """``(scan, window, time zone)`` of one key's buckets in the range; with ``as_of``
        (a time or ``"settled"``), nothing at or after it (``read/settled.py``)."""
        check_key(key)
        schema = yield from self._served(granularity)
        g = schema.check(granularity)
        calendar, now, limit = schema.calendar, time.time(), self.settings.max_buckets
        at: Cut | None = None
        if as_of is None:
            w = window(calendar, g, since, until, now=now, max_buckets=limit)
        else:
            t = as_of_time(as_of, calendar, schema.stored, now, self.settings.settle_s)
            end = min(to_unix(until, now, now), t)
            w = window(calendar, g, since, end, now=now, max_buckets=limit)
            at = cut(calendar, schema.stored, w, t)
            check_kept(at, schema.ttl_days, now)
        scan = queries.Scan(self.settings.database, g, g in schema.stored, key, w.start, w.end, at)
        return scan, w, calendar.time_zone

    def settled(self) -> Plan[int]:
        """The settled time (unix s): the start of the finest stored bucket at least
        ``settle_s`` ago, which every event before it has reached (``read/settled.py``)."""
        schema = yield from self.schema()
        return settled_time(schema.calendar, schema.stored, time.time(), self.settings.settle_s)

    def values(
        self,
        key: str,
        since: TimeLike = "24h",
        until: TimeLike = None,
        granularity: str = "1h",
        as_of: TimeLike = None,
    ) -> Plan[Values]:
        """Every bucket of ``key`` in the range, path -> sum, ``{}`` when empty."""
        scan, w, zone = yield from self._window(key, granularity, since, until, as_of)
        limit = self.settings.max_points
        rows = (yield queries.points(scan, None, limit=limit + 1)).result_rows
        if len(rows) > limit:
            raise TooLarge(
                f"the key has more than the limit of {limit} points per response in this"
                " range; use a shorter range or a coarser granularity"
            )
        return Build(partial(build_values, key, w, zone, rows))

    def series(
        self,
        key: str,
        paths: Sequence[str] = (),
        expressions: Sequence[str] = (),
        since: TimeLike = "24h",
        until: TimeLike = None,
        granularity: str = "1h",
        top: int | None = None,
        as_of: TimeLike = None,
    ) -> Plan[Series]:
        """Rows for paths, wildcards (top-N + other) and expressions over aligned buckets;
        with ``as_of`` (a time or ``"settled"``) as of that time (``read/settled.py``)."""
        check_key(key)
        plan = SeriesPlan.build(paths, expressions, top)
        scan, w, zone = yield from self._window(key, granularity, since, until, as_of)
        ranked: list[Ranked] = []
        for c in plan.wildcards:
            ranked.append(
                Ranked.of((yield queries.ranking(scan, c.regex, plan.rank_limit)).result_rows)
            )
        check_size(plan, ranked, len(w.buckets), self.settings.max_points)
        rows = (yield queries.points(scan, plan.paths)).result_rows if plan.paths else []
        parts: list[tuple[Ranked, Sequence]] = []
        for c, r in zip(plan.wildcards, ranked, strict=True):
            matched = []
            if r.matches:
                matched = (yield queries.wildcard_points(scan, c.regex, list(r.keep))).result_rows
            parts.append((r, matched))
        as_of_t = scan.cut.as_of if scan.cut else None
        return Build(partial(build_series, key, w, zone, plan, rows, parts, as_of_t))

    def _sketches(
        self,
        key: str,
        path: str,
        granularity: str,
        since: TimeLike,
        until: TimeLike,
        as_of: TimeLike,
    ) -> Step:
        """``(window, time zone, rows)`` of one distribution or gauge path."""
        scan, w, zone = yield from self._window(key, granularity, since, until, as_of)
        sql = sketch_rows(self.settings.database, scan.granularity, key, path, w, scan.cut)
        return w, zone, (yield sql).result_rows

    def quantiles(
        self,
        key: str,
        path: str,
        qs: Sequence[float] = DEFAULT_QUANTILES,
        since: TimeLike = "24h",
        until: TimeLike = None,
        granularity: str = "1h",
        as_of: TimeLike = None,
    ) -> Plan[Distribution]:
        """Quantiles ``qs`` of the distribution at ``path`` per bucket (relative error 1%)."""
        check_key(key)
        wanted = check_quantiles(qs)
        w, zone, rows = yield from self._sketches(key, path, granularity, since, until, as_of)
        return Build(partial(build_distribution, key, path, w, zone, wanted, rows))

    def gauge(
        self,
        key: str,
        path: str,
        since: TimeLike = "24h",
        until: TimeLike = None,
        granularity: str = "1h",
        as_of: TimeLike = None,
    ) -> Plan[GaugeSeries]:
        """The gauge at ``path`` per bucket: last reading by time, min and max."""
        w, zone, rows = yield from self._sketches(key, path, granularity, since, until, as_of)
        return Build(partial(build_gauge, key, path, w, zone, rows))

    def keys(
        self,
        pattern: str | None = None,
        since: TimeLike = "7d",
        until: TimeLike = None,
        limit: int = 1000,
    ) -> Plan[list[KeyInfo]]:
        """Keys matching ``pattern`` (``*`` = any run) written in the range, newest first."""
        yield from self._key_tables()
        kp = KeyPattern.parse(pattern)
        start, end = resolve(since, until)
        limit = max(1, min(limit, self.settings.max_keys))
        sql = queries.keys(self.settings.database, kp.like, kp.prefix, start, end, limit)
        return [KeyInfo(k, _utc(t)) for k, t in (yield sql).result_rows]

    def key_page(
        self,
        search: str | None = None,
        since: TimeLike = "30d",
        until: TimeLike = None,
        after: str | None = None,
        limit: int = 100,
    ) -> Plan[key_index.KeyPage]:
        """Keys matching ``search`` (a prefix, or a pattern with ``*``), job keys first; one
        page after the cursor ``after``, the count of all matches and the next cursor."""
        yield from self._key_tables()
        kp = key_index.pattern(search)
        start, end = resolve(since, until)
        limit = max(1, min(limit, self.settings.max_keys))
        db = self.settings.database
        rows = (yield key_index.page_sql(db, kp, start, end, after, limit)).result_rows
        total = (yield key_index.count_sql(db, kp, start, end)).result_rows[0][0]
        keys = [KeyInfo(k, _utc(t)) for k, t in rows[:limit]]
        return key_index.KeyPage(
            keys, int(total), key_index.next_cursor([k for k, _ in rows], limit)
        )

    def paths(self, key: str, limit: int = 10_000) -> Plan[list[PathInfo]]:
        """The paths ever written to ``key`` (within the key tables' TTL)."""
        check_key(key)
        sql = queries.key_paths(self.settings.database, key, max(1, limit))
        return [PathInfo(p, _utc(t)) for p, t in (yield sql).result_rows]

    def path_kinds(self, key: str, limit: int = 10_000) -> Plan[dict[str, str]]:
        """Paths of ``key`` that are ``distribution`` or ``gauge`` (every other is summed)."""
        check_key(key)
        sql = queries.path_kinds(self.settings.database, key, max(1, limit))
        return {p: "distribution" if dist else "gauge" for p, dist in (yield sql).result_rows}

    def sql(self, text: str, parameters: dict[str, Any] | None = None) -> Plan[SqlResult]:
        """Run read-only SQL (``readonly=2``, time and row limits); a statement ClickHouse
        refuses as written raises :class:`BadSql`."""
        s = self.settings
        limits: dict[str, object] = {"readonly": 2, "max_execution_time": int(s.query_timeout_s),
                                     "max_result_rows": s.max_sql_rows,
                                     "result_overflow_mode": "throw"}  # fmt: skip
        try:
            result = yield queries.Sql(text, dict(parameters or {}), limits)
        except DatabaseError as exc:
            raise bad_sql(exc) or exc from None
        return SqlResult(
            list(result.column_names),
            [t.name for t in result.column_types],
            [list(r) for r in result.result_rows],
        )
