"""What ClickHouse would reject is caught before the insert; errors are classified for retries."""

import random

import aiohttp
import pytest
from clickhouse_connect.driver.exceptions import (
    DatabaseError,
    DataError,
    OperationalError,
    ProgrammingError,
)

from tally.aggregator.fold import FoldRows, PartitionFold
from tally.aggregator.insert_plan import PartitionEstimator, plan_inserts, rows_outside, utc_month
from tally.aggregator.metrics import AggregatorMetrics
from tally.aggregator.settings import from_args
from tally.aggregator.sink import ttl_of_engine
from tally.clickhouse.errors import classify_error, is_data_error
from tally.clickhouse.insert_settings import BLOCK_SETTINGS
from tally.schemas.ddl import RollupSchema, identifier
from tally.schemas.granularity import Calendar, Granularity
from tally.schemas.limits import MAX_EVENT_TIME, MIN_EVENT_TIME, Limits
from tally.schemas.wire import BatchDecoder, BatchEncoder

T0 = 1_763_596_800  # 2025-11-20 00:00:00 UTC
DAY = 86400


def fold_one(at: int, record_ts_s: int, limits: Limits | None = None) -> PartitionFold:
    f = PartitionFold(limits or Limits(), BatchDecoder())
    f.last_rejects = f.add_record(
        BatchEncoder("s").encode([(at, ("k",), ("count",), [1])]), 7, record_ts_s * 1000
    )
    return f


# -- DateTime range ---------------------------------------------------------------------------


def test_record_timestamp_zero_with_negative_at_is_dead_lettered_as_out_of_range():
    f = fold_one(-120, 0)
    assert [r.reason for r in f.last_rejects] == ["time_out_of_range"]
    assert len(f) == 0 and len(f.rows()) == 0


@pytest.mark.parametrize(
    "at",
    [0, 100, MIN_EVENT_TIME - 1, MAX_EVENT_TIME + 1, 2**32 - 60, 2**32, 2**40],
)
def test_times_whose_buckets_leave_datetime_are_rejected_even_if_record_time_agrees(at):
    f = fold_one(at, max(at, 0))
    assert [r.reason for r in f.last_rejects] == ["time_out_of_range"]
    assert len(f) == 0


@pytest.mark.parametrize("at", [MIN_EVENT_TIME, MAX_EVENT_TIME - 59])
def test_range_bounds_are_accepted(at):
    f = fold_one(at, at)
    assert f.last_rejects == [] and len(f) == 1


def test_every_bucket_of_the_accepted_range_fits_datetime_in_extreme_zones():
    for zone in ("Pacific/Kiritimati", "Etc/GMT+12", "Australia/Lord_Howe", "UTC"):
        cal = Calendar(zone, "sunday")
        for at in (MIN_EVENT_TIME, MAX_EVENT_TIME):
            for g in ("1m", "1h", "1d", "1w", "1mo", "1q", "1y"):
                bucket = cal.floor(at - at % 60, Granularity.parse(g))
                assert 0 <= bucket <= 2**32 - 1, (zone, at, g)


def test_time_problem_names_the_range():
    assert Limits().time_problem(-1, 0) == "time_out_of_range"
    assert Limits().time_problem(T0 - 8 * DAY, T0) == "too_old"


# -- expired on arrival -----------------------------------------------------------------------


def test_events_older_than_a_granularity_ttl_are_counted_per_granularity():
    limits = Limits(max_past_seconds=500 * DAY, ttl_seconds=(("1m", 14 * DAY), ("1h", 400 * DAY)))
    seen: list[tuple[str, int]] = []
    f = PartitionFold(limits, BatchDecoder())
    f.on_expired = lambda g, n: seen.append((g, n))
    enc = BatchEncoder("s")
    events = [
        (T0 - 20 * DAY, ("k",), ("count",), [1]),  # past the 1m TTL only
        (T0 - 450 * DAY, ("k",), ("count",), [1]),  # past 1m and 1h
        (T0 - 60, ("k",), ("count",), [1]),  # fresh
    ]
    assert f.add_record(enc.encode(events), 0, T0 * 1000) == []
    assert f.events == 3
    assert f.expired == {"1m": 2, "1h": 1}
    assert sorted(seen) == [("1h", 1), ("1m", 2)]


def test_metrics_have_the_expired_on_arrival_counter():
    m = AggregatorMetrics()
    m.expired_on_arrival.labels("1m").inc(3)
    assert m.registry.get_sample_value("tally_expired_on_arrival_total", {"granularity": "1m"}) == 3


def test_start_warns_when_max_age_exceeds_the_shortest_ttl():
    settings = from_args(["--max-event-age-s", str(30 * DAY)], {})
    assert dict(settings.limits.ttl_seconds)["1m"] == 14 * DAY
    (warning,) = settings.startup_warnings()
    assert "1m" in warning and "14 days" in warning
    assert from_args([], {}).startup_warnings() == []


# -- error classification -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (DataError("Failed to write column 'minute': 'I' format requires 0 <= number"), "data"),
        (ProgrammingError("Insert data column count does not match column names"), "data"),
        (ProgrammingError("Setting max_threads is readonly"), "transient"),
        (
            DatabaseError(
                "Received ClickHouse exception, code: 252, server response: Code: 252. "
                "DB::Exception: Too many partitions for single INSERT block (more than 100)."
                " (TOO_MANY_PARTS)",
                code=252,
            ),
            "data",
        ),
        (
            DatabaseError(
                "Code: 252. DB::Exception: Too many parts (3001 with average size of 1 KiB) "
                "in table 'tally.rollups'. Merges are processing significantly slower than "
                "inserts. (TOO_MANY_PARTS)"
            ),
            "transient",
        ),
        (DatabaseError("Code: 241. DB::Exception: Memory limit (total) exceeded"), "transient"),
        (DatabaseError("Code: 6. DB::Exception: Cannot parse string", code=6), "data"),
        (DatabaseError("Code: 395. DB::Exception: Value passed to 'throwIf'"), "data"),
        (DatabaseError("Code: 516. DB::Exception: default: Authentication failed"), "transient"),
        (DatabaseError("Code: 60. DB::Exception: Unknown table tally.rollups"), "transient"),
        (DatabaseError("HTTP driver received HTTP status 502"), "transient"),
        (OperationalError("Network Error: Connection refused"), "transient"),
        (OperationalError("retried, server said Code: 62. Syntax error", code=62), "data"),
        (TimeoutError(), "transient"),
        (ConnectionResetError(), "transient"),
        (aiohttp.ServerDisconnectedError(), "transient"),
        (OverflowError("int too large to convert"), "data"),
        (RuntimeError("RollupSink.start() was not called"), "transient"),
    ],
)
def test_classify_error(exc, kind):
    assert classify_error(exc) == kind
    assert is_data_error(exc) == (kind == "data")


# -- partitions per insert ---------------------------------------------------------------------


def month_starts(n: int, first_year: int = 2010) -> list[int]:
    import calendar

    return [calendar.timegm((first_year + i // 12, i % 12 + 1, 1, 0, 0, 0)) for i in range(n)]


def rows_over(minutes: list[int]) -> FoldRows:
    rows = FoldRows([], [], [], [])
    for i, minute in enumerate(minutes):
        rows.keys.append(("k", f"k{i % 3}"))
        rows.minute.append(minute)
        rows.paths.append(("count",))
        rows.values.append([1.0])
    return rows


def exact_partitions(schema: RollupSchema, minute: int) -> set[tuple[str, int]]:
    import time as _time

    cal = Calendar(schema.time_zone, schema.week_start)
    out = set()
    for g in schema.stored:
        t = _time.gmtime(cal.floor(minute, Granularity.parse(g)))
        out.add((g, t.tm_year * 100 + t.tm_mon))
    return out


def test_small_flush_is_one_insert_with_the_original_token_and_order():
    rows = rows_over([T0 + 60 * i for i in range(100)])
    (piece,) = plan_inserts(rows, "t:0:1-2", RollupSchema())
    assert piece.token == "t:0:1-2" and piece.rows is rows


def test_backfill_over_150_months_splits_deterministically_within_the_limit():
    schema = RollupSchema(time_zone="Asia/Kolkata")
    minutes = [m + 90 * 60 * j for m in month_starts(150) for j in range(5)]
    random.Random(1).shuffle(minutes)
    rows = rows_over(minutes)
    pieces = plan_inserts(rows, "tok", schema, limit=64)
    again = plan_inserts(rows, "tok", schema, limit=64)
    assert len(pieces) > 1
    assert [p.token for p in pieces] == [f"tok/{i}" for i in range(len(pieces))]
    assert [p.rows.columns() for p in pieces] == [p.rows.columns() for p in again]
    for piece in pieces:
        touched = set().union(*(exact_partitions(schema, m) for m in piece.rows.minute))
        assert len(touched) <= 64
    flat = sorted((m, k) for p in pieces for m, k in zip(p.rows.minute, p.rows.keys, strict=True))
    assert flat == sorted(zip(rows.minute, rows.keys, strict=True))


@pytest.mark.parametrize(
    "zone", ["UTC", "Asia/Kolkata", "America/New_York", "Pacific/Kiritimati", "Australia/Lord_Howe"]
)
def test_partition_estimate_is_a_superset_of_the_exact_partitions(zone):
    schema = RollupSchema(stored=("1m", "15m", "2h", "1d", "1w", "1mo", "1y"), time_zone=zone)
    estimator = PartitionEstimator(schema)
    rng = random.Random(zone)
    starts = month_starts(40, 2020)
    for _ in range(400):
        minute = rng.choice(starts) + rng.randrange(-3 * DAY, 3 * DAY)
        minute -= minute % 60
        assert exact_partitions(schema, minute) <= estimator.partitions(minute)


# -- DDL and flags ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tally\n", "tally\r", "1tally", "ta lly", "tally;", "", "a" * 64])
def test_identifier_rejects(name):
    with pytest.raises(ValueError):
        identifier(name)


@pytest.mark.parametrize(
    "engine",
    [
        "AggregatingMergeTree('x')",
        "ReplicatedAggregatingMergeTree('/a', 'b') SETTINGS x = 1",
        "ReplicatedAggregatingMergeTree('/a'); DROP TABLE t; --', 'b')",
        "AggregatingMergeTree\n",
        "ReplicatedAggregatingMergeTree('/a', 'b', 'c')",
    ],
)
def test_engine_rejects_arbitrary_text(engine):
    with pytest.raises(ValueError):
        RollupSchema(engine=engine)


def test_engine_accepts_keeper_path_and_replica_macros():
    e = "ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/tally/rollups', '{replica}')"
    assert RollupSchema(engine=e).replicated


@pytest.mark.parametrize("field", ["dedup_window", "dedup_window_seconds"])
def test_a_dedup_window_of_zero_is_refused(field):
    with pytest.raises(ValueError, match="dedup"):
        RollupSchema(**{field: 0})


@pytest.mark.parametrize("flag", ["--dedup-window", "--dedup-window-seconds"])
def test_a_dedup_window_flag_of_zero_is_refused(flag, capsys):
    with pytest.raises(SystemExit):
        from_args([flag, "0"], {})
    assert "must be >= 1" in capsys.readouterr().err


def test_dedup_window_is_sized_in_flushes_and_stored_in_blocks():
    schema = from_args(["--dedup-window", "1000", "--granularities", "1m,1h,1d"], {}).schema
    # x 2 months per granularity, x 2 views writing rollups (sums; distributions and gauges)
    assert schema.dedup_window_blocks == 1000 * 3 * 2 * 2
    assert schema.dedup_settings() == {"non_replicated_deduplication_window": 12000}
    assert "non_replicated_deduplication_window = 12000" in schema.statements()[1]
    replicated = RollupSchema(
        engine="ReplicatedAggregatingMergeTree", dedup_window=10, dedup_window_seconds=86400
    )
    assert replicated.dedup_settings() == {
        "replicated_deduplication_window": 120,
        "replicated_deduplication_window_seconds": 86400,
    }
    assert from_args([], {}).schema.dedup_window_seconds == 7 * DAY


def test_ttl_is_read_from_engine_full():
    full = (
        "AggregatingMergeTree PARTITION BY (granularity, toYYYYMM(bucket)) ORDER BY (granularity)"
        " TTL bucket + toIntervalDay(multiIf(granularity = '1m', 14, 3650))"
        " SETTINGS non_replicated_deduplication_window = 6, index_granularity = 8192"
    )
    assert ttl_of_engine(full) == "bucket + toIntervalDay(multiIf(granularity = '1m', 14, 3650))"
    assert ttl_of_engine("AggregatingMergeTree ORDER BY x") is None


def test_block_settings_pin_what_shapes_blocks():
    for name in (
        "max_block_size",
        "max_insert_block_size",
        "min_insert_block_size_rows",
        "min_insert_block_size_bytes",
        "min_insert_block_size_rows_for_materialized_views",
        "min_insert_block_size_bytes_for_materialized_views",
        "max_threads",
        "max_insert_threads",
        "parallel_view_processing",
        "max_partitions_per_insert_block",
    ):
        assert name in BLOCK_SETTINGS


def test_rows_outside_landed_months_are_exactly_the_pieces_that_did_not_land():
    schema = RollupSchema()
    rows = FoldRows([], [], [], [])
    rng = random.Random(5)
    for _ in range(400):
        rows.keys.append(("k",))
        rows.minute.append(1_700_000_000 + 60 * rng.randrange(0, 400 * 1440))  # ~13 months
        rows.paths.append(("count",))
        rows.values.append([1.0])
    pieces = plan_inserts(rows, "t", schema, limit=3)
    assert len(pieces) > 3
    landed = frozenset(utc_month(m) for p in pieces[:2] for m in p.rows.minute)
    rest = rows_outside(rows, landed)
    assert sorted(rest.minute) == sorted(m for p in pieces[2:] for m in p.rows.minute)
    assert rows_outside(rows, frozenset()) is rows
