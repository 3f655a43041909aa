"""Several ClickHouse URLs: writers and readers use the first that answers, the next when it dies.

Two independent embedded servers stand in for two replicas (chDB has no Keeper, so no data is
replicated here): what is proven is the client side of failover, that a sink whose server stops
answering inserts into the next one on the engine's retry, and that a reader connects past a
dead URL. Dedup across real replicas rests on ClickHouse (docs/cluster.md).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tally.aggregator.rows import FoldRows
from tally.aggregator.sink import RollupSink
from tally.clickhouse.failover import unreachable
from tally.clickhouse.settings import ClickHouseSettings
from tally.embedded.kafka_node import free_ports
from tally.read import Reader, ReadSettings
from tally.schemas.ddl import RollupSchema
from tests.integration.readside import PASSWORD, apply_schema, start

pytestmark = [pytest.mark.integration]
MINUTE = int(time.time()) // 60 * 60


def rows(value: float) -> FoldRows:
    return FoldRows([("failover",)], [MINUTE], [("n",)], [[value]])


def total(url: str) -> float:
    settings = ReadSettings(clickhouse=ClickHouseSettings(url=url, password=PASSWORD))
    with Reader(settings) as reader:
        result = reader.sql("SELECT sum(value) FROM tally.rollups_1m WHERE key = 'failover'")
    return float(result.rows[0][0] or 0)


def test_a_sink_moves_to_the_next_replica_when_its_server_stops_answering(tmp_path):
    first, second = start(tmp_path / "a"), start(tmp_path / "b")
    try:
        for server in (first, second):
            apply_schema(server, RollupSchema())
        settings = ClickHouseSettings(url=f"{first.url},{second.url}", password=PASSWORD)

        async def run() -> list[str]:
            sink = RollupSink(settings, RollupSchema())
            await sink.start()
            outcomes = []
            try:
                await sink.insert(rows(1), "failover:1")
                outcomes.append("first")
                first.stop()
                for attempt in range(2, 6):  # what the engine does: retry, same token
                    try:
                        await sink.insert(rows(10), "failover:2")
                    except Exception as exc:
                        assert unreachable(exc), exc
                        outcomes.append(f"unreachable {attempt}")
                        continue
                    outcomes.append("second")
                    break
            finally:
                await sink.close()
            return outcomes

        outcomes = asyncio.run(run())
        assert outcomes[0] == "first" and outcomes[-1] == "second", outcomes
        assert len(outcomes) <= 3  # one failed attempt, then the next replica
        assert total(second.url) == 10.0
    finally:
        first.stop()
        second.stop()


def test_a_reader_connects_past_a_url_nobody_listens_on(tmp_path):
    server = start(tmp_path / "c")
    try:
        apply_schema(server, RollupSchema())
        (dead,) = free_ports(1)
        asyncio.run(_insert(server.url, 5))
        assert total(f"http://127.0.0.1:{dead},{server.url}") == 5.0
    finally:
        server.stop()


async def _insert(url: str, value: float) -> None:
    sink = RollupSink(ClickHouseSettings(url=url, password=PASSWORD), RollupSchema())
    await sink.start()
    try:
        await sink.insert(rows(value), f"failover:{value}")
    finally:
        await sink.close()
