"""The read side's SQL. Every value travels as a ``{name:Type}`` parameter; only the database
name (a validated identifier) and a granularity from the discovered set are formatted in."""

from __future__ import annotations

from dataclasses import dataclass

from tally.schemas.ddl import identifier
from tally.schemas.ddl_keys import KEYS_TABLE, PATHS_TABLE


@dataclass(frozen=True, slots=True)
class Sql:
    """A statement and its parameters."""

    text: str
    parameters: dict[str, object]


SCHEMA = """SELECT name, create_table_query FROM system.tables
WHERE database = {db:String} AND (name LIKE 'rollups\\_%' OR name IN ('keys_seen', 'key_paths'))"""

_RANGE = "bucket >= toDateTime({start:UInt32}, 'UTC') AND bucket < toDateTime({end:UInt32}, 'UTC')"
_PATHS = (
    "(path IN {paths:Array(String)} OR arrayExists(r -> match(path, r), {regexes:Array(String)}))"
)


def points(
    database: str,
    granularity: str,
    stored: bool,
    key: str,
    start: int,
    end: int,
    paths: list[str] | None,
    regexes: list[str] | None = None,
) -> Sql:
    """``(t, path, value)`` rows of one key; all paths when ``paths`` is None.

    Stored granularities read the table directly (its sort key is granularity, key, path,
    bucket); derived ones (1w, 1mo, ...) read their view.
    """
    db = identifier(database)
    params: dict[str, object] = {"key": key, "start": start, "end": end}
    where_paths = ""
    if paths is not None:
        where_paths = f" AND {_PATHS}"
        params["paths"] = paths
        params["regexes"] = regexes or []
    if stored:
        params["g"] = granularity
        text = f"""SELECT toUInt32(bucket) AS t, path, sum(value) AS value
FROM {db}.rollups
WHERE granularity = {{g:String}} AND key = {{key:String}} AND {_RANGE}{where_paths}
  AND vmin IS NULL
GROUP BY t, path"""
    else:
        view = identifier(f"rollups_{granularity}")
        text = f"""SELECT toUInt32(toUnixTimestamp(bucket)) AS t, path, value
FROM {db}.{view}
WHERE key = {{key:String}} AND {_RANGE}{where_paths}"""
    return Sql(text, params)


def keys(database: str, like: str, prefix: str, start: int, end: int, limit: int) -> Sql:
    """Keys matching a LIKE pattern with writes in ``[start, end)``, newest activity first."""
    db = identifier(database)
    return Sql(
        f"""SELECT key, toUInt32(max(last_seen)) AS last
FROM {db}.{KEYS_TABLE}
WHERE startsWith(key, {{prefix:String}}) AND key LIKE {{like:String}}
  AND day >= toDate(toDateTime({{start:UInt32}}, 'UTC'))
  AND day <= toDate(toDateTime({{end:UInt32}}, 'UTC'))
GROUP BY key
HAVING max(last_seen) >= toDateTime({{start:UInt32}}, 'UTC')
   AND min(first_seen) < toDateTime({{end:UInt32}}, 'UTC')
ORDER BY last DESC, key
LIMIT {{limit:UInt32}}""",
        {"prefix": prefix, "like": like, "start": start, "end": end, "limit": limit},
    )


def path_kinds(database: str, key: str, limit: int) -> Sql:
    """``(path, is_distribution)`` of the key's paths that are not summed (distributions and
    gauges: their rows carry ``vmin``); a distribution's rows also carry a sketch."""
    db = identifier(database)
    return Sql(
        f"""SELECT path, max(length(mapKeys(sketch)) > 0) AS dist
FROM {db}.rollups
WHERE key = {{key:String}} AND vmin IS NOT NULL
GROUP BY path
ORDER BY path
LIMIT {{limit:UInt32}}""",
        {"key": key, "limit": limit},
    )


def key_paths(database: str, key: str, limit: int) -> Sql:
    """The paths of one key with their last write."""
    db = identifier(database)
    return Sql(
        f"""SELECT path, toUInt32(max(last_seen)) AS last
FROM {db}.{PATHS_TABLE}
WHERE key = {{key:String}}
GROUP BY path
ORDER BY path
LIMIT {{limit:UInt32}}""",
        {"key": key, "limit": limit},
    )
