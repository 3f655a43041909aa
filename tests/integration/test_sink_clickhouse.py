"""RollupSink against the real ClickHouse engine: splitting, pinned block settings, dedup, DDL."""

from __future__ import annotations

import calendar
import logging
import os
import signal
import time
from collections.abc import Iterator

import pytest

from tally.aggregator.fold import FoldRows
from tally.aggregator.sink import RollupSink
from tally.clickhouse.errors import classify_error
from tally.clickhouse.insert_settings import BLOCK_SETTINGS
from tally.clickhouse.settings import ClickHouseSettings
from tally.clickhouse.sink_base import PartlyInserted
from tally.embedded.clickhouse.process import EmbeddedClickHouse, start_clickhouse
from tally.schemas.ddl import RollupSchema

pytestmark = pytest.mark.integration

USER, PASSWORD = "tally", "sink-test-secret"
KEEP = {"1m": 40_000, "1h": 40_000, "1d": 40_000}  # old test data must not expire on insert


@pytest.fixture(scope="module")
def clickhouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedClickHouse]:
    with start_clickhouse(tmp_path_factory.mktemp("chdb"), user=USER, password=PASSWORD) as server:
        yield server


def settings(server: EmbeddedClickHouse) -> ClickHouseSettings:
    return ClickHouseSettings(url=server.url, user=USER, password=PASSWORD)


async def started(server: EmbeddedClickHouse, schema: RollupSchema) -> RollupSink:
    sink = RollupSink(settings(server), schema)
    await sink.start()
    await sink.apply_ddl()
    return sink


async def scalar(sink: RollupSink, sql: str):
    result = await sink.client().query(sql)
    return result.result_rows[0][0]


def month_start(year: int, month: int) -> int:
    return calendar.timegm((year, month, 1, 0, 0, 0))


def rows_of(entries: list[tuple[tuple[str, ...], int, float]]) -> FoldRows:
    rows = FoldRows([], [], [], [])
    for keys, minute, value in entries:
        rows.keys.append(keys)
        rows.minute.append(minute)
        rows.paths.append(("count",))
        rows.values.append([value])
    return rows


async def test_every_pinned_setting_is_known_to_the_server(clickhouse):
    sink = await started(clickhouse, RollupSchema(database="pins"))
    try:
        known = sink.client().server_settings
        assert set(BLOCK_SETTINGS) <= set(known)
        assert sink.insert_settings("tok")["insert_deduplication_token"] == "tok"
    finally:
        await sink.close()


async def test_a_flush_over_150_months_is_split_exact_and_a_replay_dedups(clickhouse):
    schema = RollupSchema(database="backfill", ttl_days=KEEP)  # 1m, 1h, 1d: 450 partitions
    sink = await started(clickhouse, schema)
    try:
        minutes = [
            month_start(2010 + i // 12, i % 12 + 1) + 3600 * h for i in range(150) for h in (1, 30)
        ]
        rows = rows_of([(("calc", f"calc::t{i % 4}"), m, 1.0) for i, m in enumerate(minutes)])
        assert len(sink.plan(rows, "backfill:0:0-99")) > 1
        await sink.insert(rows, "backfill:0:0-99")
        total = "SELECT sum(value) FROM backfill.rollups"
        assert await scalar(sink, total) == 300 * 2 * 3  # rows x keys x granularities
        await sink.insert(rows, "backfill:0:0-99")  # the replay after a crash
        assert await scalar(sink, total) == 300 * 2 * 3
        months = "SELECT uniqExact(toYYYYMM(bucket)) FROM backfill.rollups WHERE granularity='1d'"
        assert await scalar(sink, months) == 150
    finally:
        await sink.close()


async def test_a_negative_minute_is_a_data_error_not_a_transient_one(clickhouse):
    sink = await started(clickhouse, RollupSchema(database="negative"))
    try:
        with pytest.raises(Exception) as caught:
            await sink.insert(rows_of([(("k",), -120, 1.0)]), "negative:0:0-0")
        assert classify_error(caught.value) == "data"
    finally:
        await sink.close()


async def test_partial_apply_then_replay_under_another_profile_is_exact(clickhouse):
    """The first attempt commits its first block, then fails; the replay runs with other
    block-size defaults on the connection and must form the same blocks (same dedup ids).

    The view's output is squashed into blocks of ~1.1M rows (pinned): 52 keys x 44,640
    minutes of January fill two of them (one partition each), and the third block holds the
    rest plus "zz" over 30 months, which the injected partition limit rejects. A MergeTree
    insert commits a block's part when the next block arrives, so the first one stays.
    """
    schema = RollupSchema(database="partial", stored=("1m",), ttl_days=KEEP)
    sink = await started(clickhouse, schema)
    try:
        keys = tuple(f"k{i:02d}" for i in range(52))
        jan = month_start(2024, 1)
        entries = [(keys, jan + 60 * i, 1.0) for i in range(31 * 1440)]
        # "zz" sorts last in the view's output: the third block touches 31 partitions.
        entries += [(("zz",), month_start(2021 + i // 12, i % 12 + 1), 1.0) for i in range(30)]
        rows = rows_of(entries)
        expected = 52 * 31 * 1440 + 30
        (piece,) = sink.plan(rows, "partial:3:100-200")
        total = "SELECT sum(value) FROM partial.rollups"

        # First attempt: the pinned settings, plus a fault that fails the second block only.
        with pytest.raises(Exception):  # noqa: B017 - which error the front reports varies
            await sink.client().insert(
                schema.input_table,
                piece.rows.columns(),
                column_names=["keys", "minute", "paths", "values"],
                column_type_names=[
                    "Array(String)",
                    "DateTime('UTC')",
                    "Array(LowCardinality(String))",
                    "Array(Float64)",
                ],
                column_oriented=True,
                settings={
                    **sink.insert_settings(piece.token),
                    "max_partitions_per_insert_block": 5,
                },
            )
            raise RuntimeError("first attempt reported success")  # the front may swallow it
        applied = await scalar(sink, total)
        assert 0 < applied < expected, applied  # partly applied, as after a crash mid-insert
    finally:
        await sink.close()

    # The replay: another process, whose connection defaults shape blocks differently.
    replay = RollupSink(settings(clickhouse), schema)
    await replay.start()
    try:
        client = replay.client()
        client.set_client_setting("max_block_size", 10000)
        client.set_client_setting("min_insert_block_size_rows_for_materialized_views", 10000)
        client.set_client_setting("min_insert_block_size_rows", 1000)
        client.set_client_setting("max_threads", 2)
        await replay.insert(rows, "partial:3:100-200")
        assert await scalar(replay, total) == expected
    finally:
        await replay.close()


async def test_second_start_does_not_alter_the_ttl_but_a_changed_flag_does(clickhouse, caplog):
    schema = RollupSchema(database="ttl")
    first = await started(clickhouse, schema)
    await first.close()
    caplog.set_level(logging.INFO, logger="tally.aggregator.sink")
    caplog.clear()
    again = await started(clickhouse, schema)
    await again.close()
    assert "rollups TTL changed" not in caplog.text

    changed = RollupSchema(database="ttl", ttl_days={"1m": 7, "1h": 400, "1d": 3650})
    sink = await started(clickhouse, changed)
    try:
        assert "rollups TTL changed" in caplog.text
        engine = await scalar(
            sink, "SELECT engine_full FROM system.tables WHERE database='ttl' AND name='rollups'"
        )
        assert "granularity = '1m', 7" in engine
    finally:
        await sink.close()


@pytest.mark.parametrize("stop", ["sigkill", "sigterm"])
async def test_a_replay_after_a_server_restart_is_dropped(tmp_path, stop):
    """The views' block ids must not change across a restart of ClickHouse, nor when another
    aggregator starts and applies the DDL (an unneeded MODIFY QUERY changed them)."""
    schema = RollupSchema(database="restart", ttl_days=KEEP)
    now = int(time.time()) // 60 * 60
    rows = rows_of([(("calc", f"calc::t{i % 4}"), now - 60 * (i % 30), 1.0) for i in range(120)])
    total = "SELECT sum(value) FROM restart.rollups"
    server = start_clickhouse(tmp_path / "chdb", user=USER, password=PASSWORD)
    try:
        sink = await started(server, schema)
        await sink.insert(rows, "restart:0:0-119")
        before = await scalar(sink, total)
        await sink.close()
        if stop == "sigkill":
            os.kill(server.pid, signal.SIGKILL)
        server.stop()
        server = start_clickhouse(server.path, server.port, user=USER, password=PASSWORD)
        for apply_ddl in (False, True):  # the running aggregator, then one that starts
            sink = RollupSink(settings(server), schema)
            await sink.start()
            if apply_ddl:
                await sink.apply_ddl()
            await sink.insert(rows, "restart:0:0-119")
            assert await scalar(sink, total) == before == 3 * 2 * 120  # two keys per row
            await sink.close()
    finally:
        server.stop()


async def test_a_piece_rejected_after_others_landed_reports_them_and_they_can_be_left_out(
    clickhouse,
):
    """Isolation re-inserts parts of a rejected range under new tokens: the pieces that landed
    before the rejected one must be known (``PartlyInserted.landed``) and left out."""
    schema = RollupSchema(database="pieces", ttl_days=KEEP)
    sink = RollupSink(settings(clickhouse), schema, partitions_per_insert=3)  # a month a piece
    await sink.start()
    await sink.apply_ddl()
    inner = "GROUP BY key, minute, path"
    guarded = schema.expand_query().replace(
        inner, f"WHERE throwIf(has(keys, 'poison'), 'test poison') = 0 {inner}"
    )
    await sink.client().command(f"ALTER TABLE {schema.expand_view} MODIFY QUERY {guarded}")
    try:
        valid = [
            (("calc",), month_start(2024, m) + 86400 * 3 + 60 * i, 1.0)
            for m in range(1, 7)
            for i in range(10)
        ]
        poison = [(("poison",), month_start(2024, 5) + 86400 * 9, 1.0)]
        rows = rows_of(valid + poison)
        assert len(sink.plan(rows, "t")) == 6
        with pytest.raises(PartlyInserted) as info:
            await sink.insert(rows, "pieces:0:0-9")
        rejected = info.value
        assert sink.classify(rejected) == "data"
        assert rejected.failed == 4
        assert rejected.landed == {202401, 202402, 202403, 202404}
        assert sink.rejection(rejected) == sink.rejection(rejected)  # stable across attempts
        total = "SELECT sum(value) FROM pieces.rollups"
        assert await scalar(sink, total) == 3 * 4 * 10
        # What isolation inserts for the valid records: their rows outside the landed months.
        rest = sink.exclude(rows_of(valid), rejected.landed)
        assert len(rest) == 2 * 10
        await sink.insert(rest, "pieces:0:0-4")
        assert await scalar(sink, total) == 3 * 6 * 10  # every valid row exactly once
    finally:
        await sink.close()


async def test_a_key_index_rejected_after_the_rows_landed_reports_every_month(clickhouse):
    """The key index is written after the rows: its rejection must not make isolation insert
    the rows again (they all landed)."""
    schema = RollupSchema(database="keyreject", ttl_days=KEEP)
    sink = await started(clickhouse, schema)
    try:
        await sink.client().command(
            f"ALTER TABLE {schema.keys_table} ADD CONSTRAINT no_poison CHECK key != 'poison'"
        )
        rows = rows_of([(("poison",), month_start(2024, m), 1.0) for m in (1, 2)])
        with pytest.raises(PartlyInserted) as info:
            await sink.insert(rows, "keyreject:0:0-1")
        assert sink.classify(info.value) == "data"
        assert info.value.landed == {202401, 202402}
        assert len(sink.exclude(rows, info.value.landed)) == 0
        assert await scalar(sink, "SELECT sum(value) FROM keyreject.rollups") == 3 * 2
    finally:
        await sink.close()


async def test_dedup_window_follows_the_flag_on_every_start(clickhouse):
    query = "SELECT engine_full FROM system.tables WHERE database='window' AND name='rollups'"
    sink = await started(clickhouse, RollupSchema(database="window", dedup_window=10))
    try:
        assert "non_replicated_deduplication_window = 120" in await scalar(sink, query)
    finally:
        await sink.close()
    sink = await started(clickhouse, RollupSchema(database="window", dedup_window=500))
    try:
        assert "non_replicated_deduplication_window = 6000" in await scalar(sink, query)
    finally:
        await sink.close()


async def test_sums_distributions_and_gauges_are_one_insert_and_a_replay_dedups(clickhouse):
    from tally.aggregator.fold import PartitionFold
    from tally.ingest.kinds import Dist
    from tally.schemas.limits import Limits
    from tally.schemas.wire import BatchDecoder, BatchEncoder

    schema = RollupSchema(database="kinds", ttl_days=KEEP)
    sink = await started(clickhouse, schema)
    try:
        base = month_start(2026, 1)
        events = []
        for i in range(150):  # 150 months: the plan splits it into several pieces
            minute = month_start(2012 + i // 12, i % 12 + 1) + 60
            kinds = (
                [("lat", Dist.of([1.0, 2.0, float(i + 1)]))],
                [("depth", float(i), minute * 1000)],
            )
            events.append((minute, ("k",), ("count",), [1], kinds))
        fold = PartitionFold(Limits(max_past_seconds=10**10), BatchDecoder())
        assert fold.add_record(BatchEncoder("s").encode(events), 0, (base + 60) * 1000) == []
        rows = fold.rows()
        pieces = sink.plan(rows, "kinds:0:0-0")
        assert len(pieces) > 1 and all(p.rows.has_kinds for p in pieces)
        for _ in range(2):  # the replay of the same range is dropped block by block
            await sink.insert(rows, "kinds:0:0-0")
        checks = {
            "SELECT sum(value) FROM kinds.rollups WHERE path = 'count'": 150 * 3,
            "SELECT sum(value) FROM kinds.rollups WHERE path = 'lat.count'": 450 * 3,
            "SELECT sum(value) FROM kinds.rollups WHERE path = 'lat.sum'": 3
            * sum(3 + i + 1 for i in range(150)),
            "SELECT sum(arraySum(mapValues(sketch))) FROM kinds.rollups": 450 * 3,
            "SELECT max(last).2 FROM kinds.rollups WHERE path = 'depth'": 149.0,
            "SELECT count() FROM kinds.sketches_1y WHERE path = 'lat'": 13,
        }
        for sql, want in checks.items():
            assert await scalar(sink, sql) == want, sql
    finally:
        await sink.close()
