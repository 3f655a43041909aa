"""Shared helpers for the read-side tests: a password-protected embedded ClickHouse with the
rollup schema, and exact inserts into ``rollups_input`` (the aggregators' own insert target)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import clickhouse_connect

from tally.aggregator.settings import ClickHouseSettings
from tally.aggregator.sink import RollupSink
from tally.embedded.clickhouse_http import EmbeddedClickHouse
from tally.read import ReadSettings
from tally.schemas.ddl import RollupSchema

PASSWORD = "read-side-secret"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def apply_schema(clickhouse: EmbeddedClickHouse, schema: RollupSchema) -> None:
    async def run() -> None:
        sink = RollupSink(ClickHouseSettings(url=clickhouse.url, password=PASSWORD), schema)
        await sink.start()
        try:
            await sink.apply_ddl()
        finally:
            await sink.close()

    asyncio.run(run())


def insert(
    clickhouse: EmbeddedClickHouse, database: str, rows: list[tuple[list[str], datetime, dict]]
) -> None:
    """``(keys, minute, {path: value})`` rows, inserted as the aggregator does."""
    client = clickhouse_connect.get_client(
        host=clickhouse.host, port=clickhouse.port, password=PASSWORD
    )
    data = [[k, m, list(v), [float(x) for x in v.values()]] for k, m, v in rows]
    client.insert(
        f"{database}.rollups_input",
        data,
        column_names=["keys", "minute", "paths", "values"],
        settings={"async_insert": 0},
    )
    client.close()


def settings(clickhouse: EmbeddedClickHouse, database: str) -> ReadSettings:
    return ReadSettings(
        clickhouse=ClickHouseSettings(url=clickhouse.url, password=PASSWORD), database=database
    )


def start(path: Path) -> EmbeddedClickHouse:
    from tally.embedded.clickhouse_http import start_clickhouse

    return start_clickhouse(path, user="default", password=PASSWORD)
