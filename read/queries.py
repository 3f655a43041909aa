"""The read side's SQL. Every value travels as a ``{name:Type}`` parameter; only the database
name (a validated identifier) and a granularity from the discovered set are formatted in."""

from __future__ import annotations

from dataclasses import dataclass

from tally.read.settled import Cut, Piece
from tally.schemas.ddl import identifier
from tally.schemas.ddl_keys import KEYS_TABLE, PATHS_TABLE


@dataclass(frozen=True, slots=True)
class Sql:
    """A statement, its parameters and the ClickHouse settings it runs with (if any)."""

    text: str
    parameters: dict[str, object]
    settings: dict[str, object] | None = None


SCHEMA = """SELECT name, create_table_query FROM system.tables
WHERE database = {db:String}
  AND (name LIKE 'rollups\\_%' OR name IN ('rollups', 'keys_seen', 'key_paths'))"""

_RANGE = "bucket >= toDateTime({start:UInt32}, 'UTC') AND bucket < toDateTime({end:UInt32}, 'UTC')"


@dataclass(frozen=True, slots=True)
class Scan:
    """One key's counters at one granularity over ``[start, end)`` (unix seconds).

    With a ``cut`` (a read as of a time, ``read/settled.py``) the buckets end at
    ``cut.whole_end`` and the last, partial bucket is summed from the stored rows of
    ``cut.pieces`` under the bucket start ``cut.partial``."""

    database: str
    granularity: str
    stored: bool
    key: str
    start: int
    end: int
    cut: Cut | None = None

    def source(self, where: str = "") -> tuple[str, dict[str, object]]:
        """``FROM (...)`` yielding ``(t, path, value)`` rows, and its parameters; ``where`` is
        added to every part's conditions (``" AND ..."``). Stored granularities read the
        table (sorted by granularity, key, path, bucket); derived ones (1w, 1mo, ...) read
        their view."""
        db = identifier(self.database)
        end = self.cut.whole_end if self.cut else self.end
        params: dict[str, object] = {"key": self.key, "start": self.start, "end": end}
        if self.stored:
            params["g"] = self.granularity
            whole = f"""SELECT toUInt32(bucket) AS t, path, value FROM {db}.rollups
WHERE granularity = {{g:String}} AND key = {{key:String}} AND {_RANGE} AND vmin IS NULL{where}"""
        else:
            view = identifier(f"rollups_{self.granularity}")
            whole = f"""SELECT toUInt32(toUnixTimestamp(bucket)) AS t, path, value FROM {db}.{view}
WHERE key = {{key:String}} AND {_RANGE}{where}"""
        if self.cut is None or self.cut.partial is None:
            return f"FROM ({whole})", params
        tiles, tile_params = tiles_where(self.cut.pieces)
        params |= tile_params | {"partial": self.cut.partial}
        if self.stored:
            # one scan: the whole buckets' rows and the pieces' rows (never of granularity g: a
            # whole g bucket cannot fit before T inside the g bucket that contains T)
            t = "if(granularity = {g:String}, toUInt32(bucket), {partial:UInt32})"
            return (
                f"""FROM (SELECT {t} AS t, path, value FROM {db}.rollups
WHERE key = {{key:String}} AND vmin IS NULL{where}
  AND ((granularity = {{g:String}} AND {_RANGE}) OR {tiles}))""",
                params,
            )
        partial = f"""SELECT {{partial:UInt32}} AS t, path, value FROM {db}.rollups
WHERE key = {{key:String}} AND vmin IS NULL AND ({tiles}){where}"""
        return f"FROM ({whole}\nUNION ALL\n{partial})", params


def tiles_where(pieces: tuple[Piece, ...]) -> tuple[str, dict[str, object]]:
    """``(granularity = .. AND bucket in [..)) OR ...`` over stored rows, and its parameters
    (named by position: nothing of the request is formatted in)."""
    terms, params = [], {}
    for i, p in enumerate(pieces):
        terms.append(
            f"(granularity = {{tg{i}:String}} AND bucket >= toDateTime({{ts{i}:UInt32}}, 'UTC')"
            f" AND bucket < toDateTime({{te{i}:UInt32}}, 'UTC'))"
        )
        params |= {f"tg{i}": p.granularity, f"ts{i}": p.start, f"te{i}": p.end}
    return " OR ".join(terms) or "0", params


def points(scan: Scan, paths: list[str] | None, limit: int | None = None) -> Sql:
    """``(t, path, value)`` rows; all paths when ``paths`` is None; at most ``limit`` rows
    when given (ask for one more than allowed to detect an overflow)."""
    where, extra = "", {}
    if paths is not None:
        where, extra = " AND path IN {paths:Array(String)}", {"paths": paths}
    source, params = scan.source(where)
    text = f"SELECT t, path, sum(value) AS value\n{source}\nGROUP BY t, path"
    if limit is not None:
        text += "\nLIMIT {limit:UInt32}"
        extra["limit"] = limit
    return Sql(text, {**params, **extra})


def ranking(scan: Scan, regex: str, limit: int) -> Sql:
    """``(path, total, matches)``: the ``limit`` paths matching ``regex`` with the largest
    totals in the range (ties by path), and how many paths match in all."""
    source, params = scan.source(" AND match(path, {regex:String})")
    text = f"""SELECT path, total, count() OVER () AS matches
FROM (SELECT path, sum(value) AS total {source} GROUP BY path)
ORDER BY total DESC, path
LIMIT {{limit:UInt32}}"""
    return Sql(text, {**params, "regex": regex, "limit": limit})


def wildcard_points(scan: Scan, regex: str, keep: list[str]) -> Sql:
    """``(t, name, value)`` of the paths matching ``regex``: the ``keep`` paths by name,
    every other match summed under the name ``''`` (the ``other`` row)."""
    source, params = scan.source(" AND match(path, {regex:String})")
    text = f"""SELECT t, if(has({{keep:Array(String)}}, path), path, '') AS name,
       sum(value) AS value
{source}
GROUP BY t, name"""
    return Sql(text, {**params, "regex": regex, "keep": keep})


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
