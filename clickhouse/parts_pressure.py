"""How close a writer's tables are to ClickHouse's insert delay: active parts and merges.

ClickHouse delays inserts into a partition that holds ``parts_to_delay_insert`` active parts
(MergeTree setting, default 1000) and rejects them at ``parts_to_throw_insert`` (3000)
(clickhouse.com/docs/reference/settings/merge-tree-settings). ``read_pressure`` reads the
fullest partition of the given tables (``system.parts``), the merges in flight
(``system.merges``) and the delay threshold (a table's own ``SETTINGS`` override, else the
server's ``system.merge_tree_settings``). Every query takes the tables as parameters.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from clickhouse_connect.driver.asyncclient import AsyncClient

from tally.clickhouse.errors import error_code

DEFAULT_PARTS_TO_DELAY_INSERT = 1000  # ClickHouse's MergeTree default
ACCESS_DENIED = 497  # also "Not enough privileges"
_DELAY_SETTING = re.compile(r"\bparts_to_delay_insert\s*=\s*(\d+)")

_PARTS = (
    "SELECT ifNull(max(c), 0) FROM (SELECT count() AS c FROM system.parts"
    " WHERE database = {db:String} AND has({tables:Array(String)}, table) AND active"
    " GROUP BY table, partition)"
)
_MERGES = (
    "SELECT count() FROM system.merges"
    " WHERE database = {db:String} AND has({tables:Array(String)}, table)"
)
_ENGINES = (
    "SELECT engine_full FROM system.tables"
    " WHERE database = {db:String} AND has({tables:Array(String)}, name)"
)
_SERVER_DELAY = "SELECT value FROM system.merge_tree_settings WHERE name = 'parts_to_delay_insert'"


@dataclass(frozen=True, slots=True)
class PartsPressure:
    """Active parts in the fullest partition, merges in flight, and where inserts slow down."""

    max_active_parts: int
    merges: int
    parts_to_delay_insert: int = DEFAULT_PARTS_TO_DELAY_INSERT

    @property
    def ratio(self) -> float:
        """``max_active_parts / parts_to_delay_insert``: 1.0 is where ClickHouse delays."""
        return self.max_active_parts / max(1, self.parts_to_delay_insert)


class PartsUnreadable(Exception):
    """The user may not read the system tables (``ACCESS_DENIED``): no feedback is possible."""


def delay_threshold(engines_full: Sequence[str], server_default: int | None) -> int:
    """The lowest ``parts_to_delay_insert`` of the tables: a table's own ``SETTINGS`` value,
    else the server's default, else ClickHouse's documented 1000."""
    base = server_default if server_default and server_default > 0 else None
    base = base or DEFAULT_PARTS_TO_DELAY_INSERT
    found = [int(m.group(1)) for e in engines_full if (m := _DELAY_SETTING.search(e))]
    values = [v for v in found if v > 0] or [base]
    if len(found) < len(engines_full):
        values.append(base)  # a table without its own setting uses the server's
    return min(values)


async def read_pressure(client: AsyncClient, database: str, tables: Sequence[str]) -> PartsPressure:
    """Read the pressure on ``database``'s ``tables``; ``PartsUnreadable`` without access."""
    params = {"db": database, "tables": list(tables)}
    try:
        parts = await client.query(_PARTS, parameters=params)
        merges = await client.query(_MERGES, parameters=params)
        engines = await client.query(_ENGINES, parameters=params)
        server = await client.query(_SERVER_DELAY)
    except Exception as exc:
        if error_code(exc) == ACCESS_DENIED:
            raise PartsUnreadable(str(exc).splitlines()[0][:200]) from exc
        raise
    rows = server.result_rows
    server_default = int(rows[0][0]) if rows else None
    limit = delay_threshold([str(r[0]) for r in engines.result_rows], server_default)
    return PartsPressure(
        max_active_parts=int(parts.result_rows[0][0]),
        merges=int(merges.result_rows[0][0]),
        parts_to_delay_insert=limit,
    )
