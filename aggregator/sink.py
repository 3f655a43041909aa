"""Writes rollup rows to ClickHouse (server or the embedded front) with clickhouse-connect.

Every insert pins the settings that decide how ClickHouse cuts it into blocks (dedup ids are
the token plus the block's ordinal, so a replay must form the same blocks whatever the server
or user profile says; for the views' blocks also the view's identity, which ClickHouse 26.9
derives differently after ``MODIFY QUERY`` than after loading the view at startup, so
``apply_ddl`` changes a view's query only when it differs), is split so that no block
touches more partitions than ClickHouse accepts (``insert_plan``), and errors are classified
by ``tally.clickhouse.errors``: ``"data"`` (this insert will fail again however long we
wait) or ``"transient"``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from clickhouse_connect.driver.exceptions import DatabaseError

from tally.aggregator.insert_plan import (
    DEFAULT_PARTITIONS_PER_INSERT,
    InsertPiece,
    plan_inserts,
    rows_outside,
    utc_month,
)
from tally.aggregator.key_rows import (
    DAY_COLUMNS,
    DAY_TYPES,
    PATH_COLUMNS,
    PATH_TYPES,
    KeyIndexRows,
    WrittenKeys,
)
from tally.aggregator.rows import FoldRows, concat_rows
from tally.clickhouse.ddl import run_ddl
from tally.clickhouse.failover import Replicas
from tally.clickhouse.insert_settings import pinned_settings
from tally.clickhouse.parts_pressure import PartsPressure, read_pressure
from tally.clickhouse.settings import ClickHouseSettings
from tally.clickhouse.sink_base import PartlyInserted, ReplicaSink
from tally.schemas.ddl import TABLE, RollupSchema
from tally.schemas.ddl_keys import KEYS_TABLE, PATHS_TABLE, RETIRED_VIEWS

if TYPE_CHECKING:
    pass

log = logging.getLogger("tally.aggregator.sink")

WRITTEN_TABLES = (TABLE, KEYS_TABLE, PATHS_TABLE)  # new parts on every flush

COLUMN_TYPES = {
    "keys": "Array(String)",
    "minute": "DateTime('UTC')",
    "paths": "Array(LowCardinality(String))",
    "values": "Array(Float64)",
    "kind": "UInt8",
    "path": "String",
    "sketch_keys": "Array(Int16)",
    "sketch_counts": "Array(UInt64)",
    "stats": "Array(Float64)",
    "vmin": "Nullable(Float64)",
    "vmax": "Nullable(Float64)",
    "last": "Tuple(Int64, Float64)",
}


class RollupSink(ReplicaSink):
    """Applies the DDL and inserts rows with a dedup token (one or more inserts per call)."""

    def __init__(
        self,
        settings: ClickHouseSettings,
        schema: RollupSchema,
        partitions_per_insert: int = DEFAULT_PARTITIONS_PER_INSERT,
    ) -> None:
        self.settings = settings
        self.schema = schema
        self.partitions_per_insert = partitions_per_insert
        self.written_keys = WrittenKeys()
        self.replicas = Replicas(settings)

    async def apply_ddl(self) -> None:
        """Create what is missing; align the view, the dedup window and the TTL with the flags."""
        client = self.client()
        await run_ddl(client, self.schema.statements())
        changed = [v for v, q in self.schema.view_queries().items() if await self._differs(v, q)]
        if changed:
            log.warning(
                "view query changed; applying (a replay of a range inserted before this change"
                " is counted again once ClickHouse restarts)",
                extra={"views": changed},
            )
        await run_ddl(
            client,
            [
                *(self.schema.modify_query_statement(view) for view in changed),
                self.schema.dedup_setting_statement(),
            ],
        )
        await self._retire_key_views()
        if await self._ttl_differs():
            log.info("rollups TTL changed; applying", extra={"ttl": self.schema.ttl_clause()})
            await client.command(
                self.schema.ttl_statement(), settings={"materialize_ttl_after_modify": 0}
            )

    async def _differs(self, view: str, query: str) -> bool:
        """True unless ``view``'s stored query is ``query`` (both formatted by ClickHouse).

        An unneeded ``MODIFY QUERY`` is not harmless: ClickHouse 26.9 then gives the view's
        blocks other dedup ids than after it loads the view at startup, so a range inserted
        before the server restarts and replayed after it was counted twice.
        """
        database = self.schema.database
        name = view.removeprefix(f"{database}.")
        result = await self.client().query(
            "SELECT formatQuerySingleLine(as_select) = formatQuerySingleLine({q:String})"
            " FROM system.tables WHERE database = {db:String} AND name = {t:String}",
            parameters={"q": query, "db": database, "t": name},
        )
        return not (result.result_rows and bool(result.result_rows[0][0]))

    async def _retire_key_views(self) -> None:
        """Drop the views that fed the key index before the aggregator wrote it (issue #18).

        Harmless if left (both writers give the same ``min``/``max``) but they cost the server
        a fan-out of every insert; a user without DROP gets a warning naming the statement.
        """
        client = self.client()
        result = await client.query(
            "SELECT name FROM system.tables WHERE database = {db:String}"
            " AND has({names:Array(String)}, name) ORDER BY name",
            parameters={"db": self.schema.database, "names": list(RETIRED_VIEWS)},
        )
        for (name,) in result.result_rows:
            c = self.schema.placement.on_cluster()
            statement = f"DROP VIEW IF EXISTS {self.schema.database}.{name}{c}"
            try:
                await client.command(statement)
            except DatabaseError as exc:
                log.warning(
                    "a retired view still feeds the key index on every insert; an"
                    " administrator can run: %s (%s)",
                    statement,
                    str(exc).splitlines()[0][:200],
                )

    async def _ttl_differs(self) -> bool:
        """True when the table's TTL is not the configured one (compared as ClickHouse formats it).

        ``engine_full`` is read through the Native format (no TSV escaping of quotes) and both
        sides are normalised by ``formatQuerySingleLine``, so identical flags never ALTER.
        """
        client = self.client()
        result = await client.query(
            "SELECT engine_full FROM system.tables"
            " WHERE database = {db:String} AND name = {t:String}",
            parameters={"db": self.schema.database, "t": TABLE},
        )
        if not result.result_rows:
            return False
        current = ttl_of_engine(str(result.result_rows[0][0]))
        wanted = self.schema.ttl_clause()
        if current is None:
            return True
        if " ".join(current.split()) == " ".join(wanted.split()):
            return False
        same = await client.query(
            "SELECT formatQuerySingleLine(concat('SELECT ', {a:String}))"
            " = formatQuerySingleLine(concat('SELECT ', {b:String}))",
            parameters={"a": current, "b": wanted},
        )
        return not bool(same.result_rows[0][0])

    def plan(self, rows: FoldRows, token: str) -> list[InsertPiece]:
        """The inserts for one flush: one piece with ``token``, or ``token/<i>`` per piece."""
        return plan_inserts(rows, token, self.schema, self.partitions_per_insert)

    def insert_settings(self, token: str) -> dict[str, int | str]:
        """The settings of one insert: ``BLOCK_SETTINGS`` the server knows, plus the token."""
        return pinned_settings(self.client(), token)

    async def insert(self, rows: FoldRows, token: str) -> None:
        """Insert ``rows`` synchronously (durable on return); a replay with ``token`` is a no-op.

        The rows go to the Null table ``rollups_input``; its view writes ``rollups``, and the
        token is carried to the view's blocks (``deduplicate_blocks_in_dependent_materialized_
        views``), so a repeated range is dropped there, block by block. A flush touching more
        partitions than one insert may is split by ``plan`` and its pieces inserted in order;
        a replay re-inserts every piece and ClickHouse drops those it already has.

        Then the key index: the (key, day) and (key, path) facts of ``rows`` not yet written
        by this process (``key_rows``), into ``keys_seen`` and ``key_paths``. Both keep only
        ``min``/``max``, so a replay that writes them again changes nothing. (Written last:
        written first, it raised the peak memory of wide flushes by ~55 MiB.)

        A data rejection after something landed raises :class:`PartlyInserted`: a piece after
        others (their months), or the key index (every month: all rows are in).
        """
        pieces = self.plan(rows, token)
        landed: set[int] = set()
        for n, piece in enumerate(pieces):
            try:
                await self.insert_piece(piece)
            except Exception as exc:
                if landed and self.classify(exc) == "data":
                    raise PartlyInserted(exc, n, frozenset(landed)) from exc
                raise
            if len(pieces) > 1:  # (one piece: nothing can have landed before a rejection)
                landed.update(utc_month(minute) for minute in set(piece.rows.minute))
        try:
            await self.insert_key_index(self.written_keys.new_rows(rows), token)
        except Exception as exc:
            if self.classify(exc) != "data":
                raise
            every = frozenset(utc_month(minute) for minute in set(rows.minute))
            raise PartlyInserted(exc, len(pieces), every) from exc

    def exclude(self, rows: FoldRows, landed: frozenset[int]) -> FoldRows:
        """``rows`` without those a :class:`PartlyInserted` insert landed (its ``landed``)."""
        return rows_outside(rows, landed)

    async def insert_key_index(self, index: KeyIndexRows, token: str) -> None:
        """Write ``index`` (under ``token/keys``, ``token/paths``); remembered once acknowledged."""
        if index.days:
            days = index.day_columns()
            await self._insert(
                self.schema.keys_table, days, DAY_COLUMNS, DAY_TYPES, f"{token}/keys"
            )
        if index.paths:
            paths = index.path_columns()
            await self._insert(
                self.schema.paths_table, paths, PATH_COLUMNS, PATH_TYPES, f"{token}/paths"
            )
        self.written_keys.remember(index)

    async def parts_pressure(self) -> PartsPressure:
        """Active parts in the fullest partition of the tables every flush writes, merges in
        flight, and their ``parts_to_delay_insert`` (the engine's flush pacing reads it)."""
        return await read_pressure(self.client(), self.schema.database, WRITTEN_TABLES)

    def combine(self, parts: Sequence[FoldRows]) -> FoldRows:
        """Several partitions' rows as one insert (the engine's combined flush)."""
        return concat_rows(parts)

    async def insert_piece(self, piece: InsertPiece) -> None:
        """Insert one planned piece under its own token."""
        names = piece.rows.column_names()
        types = [COLUMN_TYPES[n] for n in names]
        await self._insert(self.schema.input_table, piece.rows.columns(), names, types, piece.token)

    async def _insert(
        self, table: str, columns: list, names: Sequence[str], types: Sequence[str], token: str
    ) -> None:
        """One column-oriented insert under ``token``, on the current replica (the next one
        after a failure to reach it: the engine retries with the same token)."""
        await self.replicas.call(
            lambda client: client.insert(
                table,
                columns,
                column_names=list(names),
                column_type_names=list(types),
                column_oriented=True,
                settings=pinned_settings(client, token),
            )
        )


_TTL = re.compile(r"\bTTL (.*?)(?: SETTINGS |$)", re.DOTALL)


def ttl_of_engine(engine_full: str) -> str | None:
    """The TTL expression in a ``system.tables.engine_full`` text, or None."""
    match = _TTL.search(engine_full)
    return match.group(1).strip() if match else None
