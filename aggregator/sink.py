"""Writes rollup rows to ClickHouse (server or the embedded front) with clickhouse-connect."""

from __future__ import annotations

import logging
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.asyncclient import AsyncClient
from clickhouse_connect.driver.exceptions import DatabaseError

from tally.aggregator.fold import COLUMNS, FoldRows
from tally.aggregator.settings import ClickHouseSettings
from tally.schemas.ddl import RollupSchema

log = logging.getLogger("tally.aggregator.sink")

COLUMN_TYPES = (
    "Array(String)",
    "DateTime('UTC')",
    "Array(LowCardinality(String))",
    "Array(Float64)",
)


def is_data_error(exc: BaseException) -> bool:
    """True for ClickHouse's own ``Code: N`` errors, which waiting alone will not fix."""
    return isinstance(exc, DatabaseError) and "Code:" in str(exc)


async def connect(settings: ClickHouseSettings, database: str | None = None) -> AsyncClient:
    """An async clickhouse-connect client for ``settings.url``."""
    url = urlparse(settings.url)
    secure = url.scheme == "https"
    return await clickhouse_connect.get_async_client(
        host=url.hostname or "127.0.0.1",
        port=url.port or (8443 if secure else 8123),
        username=settings.user,
        password=settings.password,
        secure=secure,
        verify=settings.verify_tls,
        ca_cert=settings.ca_cert,
        database=database or "default",
        send_receive_timeout=int(settings.insert_timeout_s),
        compress="lz4",
    )


class RollupSink:
    """Applies the DDL and inserts rows with a dedup token, one insert per call."""

    def __init__(self, settings: ClickHouseSettings, schema: RollupSchema) -> None:
        self.settings = settings
        self.schema = schema
        self._client: AsyncClient | None = None

    async def start(self) -> None:
        """Connect (raises if ClickHouse is unreachable; callers retry)."""
        self._client = await connect(self.settings)

    async def apply_ddl(self) -> None:
        """Create the database, table and views if missing; align the TTL if it changed."""
        client = self._require()
        for statement in self.schema.statements():
            await client.command(statement)
        # Atomic, idempotent: a changed zone, week start or granularity set takes effect
        # without a moment in which inserts into rollups_input would go nowhere.
        await client.command(
            f"ALTER TABLE {self.schema.expand_view} MODIFY QUERY {self.schema.expand_query()}"
        )
        engine = await client.command(
            "SELECT engine_full FROM system.tables"
            " WHERE database = {db:String} AND name = 'rollups'",
            parameters={"db": self.schema.database},
        )
        wanted = self.schema.ttl_clause()
        if isinstance(engine, str) and f"TTL {wanted}" not in engine:
            log.info("rollups TTL changed; applying", extra={"ttl": wanted})
            await client.command(
                f"ALTER TABLE {self.schema.table} MODIFY TTL {wanted}",
                settings={"materialize_ttl_after_modify": 0},
            )

    async def insert(self, rows: FoldRows, token: str) -> None:
        """Insert ``rows`` synchronously (durable on return); a replay with ``token`` is a no-op.

        The rows go to the Null table ``rollups_input``; its view writes ``rollups``, and the
        token is carried to the view's blocks (``deduplicate_blocks_in_dependent_materialized_
        views``), so a repeated range is dropped there, block by block.
        """
        await self._require().insert(
            self.schema.input_table,
            rows.columns(),
            column_names=list(COLUMNS),
            column_type_names=list(COLUMN_TYPES),
            column_oriented=True,
            settings={
                "async_insert": 0,
                "insert_deduplicate": 1,
                "insert_deduplication_token": token,
                "deduplicate_blocks_in_dependent_materialized_views": 1,
                "max_threads": 1,
            },
        )

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    def _require(self) -> AsyncClient:
        if self._client is None:
            raise RuntimeError("RollupSink.start() was not called")
        return self._client
