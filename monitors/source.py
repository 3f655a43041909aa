"""Reading what monitors judge: one query per monitor and range, every matching key at once.

A key pattern becomes a prefix + LIKE filter on the rollups' sort key (granularity, key,
path, bucket), so 1,000 tenant keys cost one range scan, not 1,000 requests. Values travel as
bound parameters; only the validated database name and a view name from the served set are
formatted into the SQL.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from tally.monitors.spec import Monitor, NoData
from tally.read import AsyncReader
from tally.read.expression import parse as parse_expression
from tally.read.patterns import KeyPattern, PathWildcard
from tally.read.plan import statement
from tally.read.queries import Sql
from tally.read.schema import ServedSchema
from tally.schemas.ddl import SKETCH_PREFIX, identifier

_RANGE = "bucket >= toDateTime({start:UInt32}, 'UTC') AND bucket < toDateTime({end:UInt32}, 'UTC')"


@dataclass
class Fetched:
    """Rows of one monitor over ``buckets``: key -> path -> bucket -> sum, plus keys known
    to exist (written recently) even if silent in the range."""

    buckets: list[int]
    grid: dict[str, dict[str, dict[int, float]]] = field(default_factory=dict)
    known_keys: set[str] = field(default_factory=set)


def wanted_paths(monitor: Monitor) -> tuple[list[str], list[str]]:
    """Concrete paths and wildcard regexes a monitor reads."""
    paths: list[str] = []
    regexes: list[str] = []
    if monitor.path:
        if "*" in monitor.path:
            regexes.append(PathWildcard.parse(monitor.path).regex)
        else:
            paths.append(monitor.path)
    if monitor.expression:
        paths.extend(parse_expression(monitor.expression).paths)
    active = getattr(monitor.condition, "active", None)
    if active:
        paths.append(active)
    return list(dict.fromkeys(paths)), regexes


def rows_sql(database: str, schema: ServedSchema, monitor: Monitor, start: int, end: int) -> Sql:
    """``(key, t, path, value)`` rows for every key the monitor matches in ``[start, end)``."""
    db = identifier(database)
    g = str(monitor.granularity)
    pattern = KeyPattern.parse(monitor.key)
    paths, regexes = wanted_paths(monitor)
    params: dict[str, object] = {
        "start": start, "end": end, "paths": paths, "regexes": regexes,
        "prefix": pattern.prefix, "like": pattern.like, "g": g,
    }  # fmt: skip
    where_paths = (
        "(path IN {paths:Array(String)}"
        " OR arrayExists(r -> match(path, r), {regexes:Array(String)}))"
    )
    where_key = "startsWith(key, {prefix:String}) AND key LIKE {like:String}"
    if monitor.gauge:  # the last reading per bucket, from the merged gauge rows
        view = identifier(f"{SKETCH_PREFIX}{schema.check(g)}")
        text = f"""SELECT key, toUInt32(toUnixTimestamp(bucket)) AS t, path, last.2 AS value
FROM {db}.{view}
WHERE {where_key} AND {_RANGE} AND {where_paths} AND last.1 > 0"""
    elif g in schema.stored:  # summed rows only (distribution and gauge rows have vmin)
        text = f"""SELECT key, toUInt32(bucket) AS t, path, sum(value) AS value
FROM {db}.rollups
WHERE granularity = {{g:String}} AND {where_key} AND {_RANGE} AND {where_paths}
  AND vmin IS NULL
GROUP BY key, t, path"""
    else:
        view = identifier(f"rollups_{schema.check(g)}")
        text = f"""SELECT key, toUInt32(toUnixTimestamp(bucket)) AS t, path, value
FROM {db}.{view}
WHERE {where_key} AND {_RANGE} AND {where_paths}"""
    return Sql(text, params)


async def fetch(reader: AsyncReader, monitor: Monitor, buckets: list[int], end: int) -> Fetched:
    """Everything ``monitor`` needs to judge ``buckets`` (bucket starts; ``end`` exclusive)."""
    schema = await reader.schema()
    if str(monitor.granularity) not in schema.granularities:
        schema = await reader.schema(refresh=True)
    sql = rows_sql(reader.settings.database, schema, monitor, buckets[0], end)
    result = await reader.run(statement(sql))  # the reader's client, our own SQL
    grid: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for key, t, path, value in result.result_rows:
        cell = grid[key][path]
        cell[int(t)] = cell.get(int(t), 0.0) + value
    fetched = Fetched(buckets, {k: dict(v) for k, v in grid.items()})
    if "*" in monitor.key and isinstance(monitor.condition, NoData):
        # Keys written in the last day stay segments while silent (that is the point).
        since = buckets[0] - 86_400
        infos = await reader.keys(monitor.key, since=since, until=end, limit=10_000)
        fetched.known_keys = {i.key for i in infos}
    return fetched
