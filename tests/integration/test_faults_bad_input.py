"""10k+ malformed records and events: no crash, valid ones exact, every bad one dead-lettered.

Dead letters are at least once (a range replayed after a rebalance or a retried flush queues
its bad records again), so the test checks what the product promises: every bad record or
event is dead-lettered, identified by its source ``topic:partition:offset`` and event index
(headers ``source`` and ``index``); the distinct identities are exactly the expected ones with
the expected reasons; no letter names anything else; and the valid events are exact."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tally.ingest.kinds import Dist
from tally.loadtest.exactness import Expected, compare, fetch_totals
from tally.schemas.granularity import Calendar
from tally.schemas.wire import COLUMN_TYPES
from tally.schemas.wire_columns import ColumnsEncoder

from .conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.faults]

NOW = int(time.time())
STRINGS = ["jobs", "jobs::t1", "count", "v", "x" * 300, ".".join("abcdefghij"), "", "a..b"]
# keyset 0: valid; 1: over-long key; 2: empty key. shape 0: valid; 1: too deep; 2: bad path.
KEYSETS = [[0, 1], [4], [6]]
SHAPES = [[2, 3], [5], [7]]

BAD_EVENTS = {
    "not_finite": lambda: [NOW, 0, 0, [1, math.nan]],
    "not_finite_inf": lambda: [NOW, 0, 0, [math.inf, 1]],
    "huge_value": lambda: [NOW, 0, 0, [1, 2**62]],
    "non_numeric": lambda: [NOW, 0, 0, [1, "7"]],
    "non_numeric_bool": lambda: [NOW, 0, 0, [True, 1]],
    "non_numeric_none": lambda: [NOW, 0, 0, [None, 1]],
    "too_old": lambda: [NOW - 30 * 86400, 0, 0, [1, 1]],
    "too_far_in_future": lambda: [NOW + 7 * 86400, 0, 0, [1, 1]],
    "bad_timestamp": lambda: [str(NOW), 0, 0, [1, 1]],
    "bad_reference": lambda: [NOW, 9, 0, [1, 1]],
    "values_shape_mismatch": lambda: [NOW, 0, 0, [1, 1, 1]],
    "key_too_long": lambda: [NOW, 1, 0, [1, 1]],
    "bad_key": lambda: [NOW, 2, 0, [1, 1]],
    "too_deep": lambda: [NOW, 0, 1, [1]],
    "bad_path": lambda: [NOW, 0, 2, [1]],
    "malformed_event": lambda: [NOW, 0],
}
REASON = {name: name.split("_inf")[0].split("_bool")[0].split("_none")[0] for name in BAD_EVENTS}

# Version-2 records (distributions and gauges): strings 8 = "lat", 9 = "q"; shape 3 is empty.
V2_STRINGS = [*STRINGS, "lat", "q"]
V2_SHAPES = [*SHAPES, []]
GOOD_DIST = [8, 1, 5.0, 25.0, 5.0, 5.0, [81], [1]]  # one sample of 5 (bucket 81)
BAD_KINDS = {
    "negative_sample": lambda: [NOW, 0, 3, [], [[8, 1, -5.0, 25.0, -5.0, -5.0, [81], [1]]], []],
    "sample_not_finite": lambda: [NOW, 0, 3, [], [[8, 1, 5.0, 25.0, 5.0, math.nan, [81], [1]]]],
    "sample_above_range": lambda: [NOW, 0, 3, [], [[8, 1, 5.0, 1.0, 5.0, 2.0**60, [81], [1]]]],
    "bad_sketch_bucket": lambda: [NOW, 0, 3, [], [[8, 1, 5.0, 25.0, 5.0, 5.0, [40_000], [1]]]],
    "bad_distribution": lambda: [NOW, 0, 3, [], [[8, 3, 5.0, 25.0, 5.0, 5.0, [81], [1]]]],
    # "count" is a summed path of this very event: one path, one kind
    "path_kind_conflict": lambda: [NOW, 0, 0, [1, 1], [[2, 1, 5.0, 25.0, 5.0, 5.0, [81], [1]]]],
    "gauge_without_timestamp": lambda: [NOW, 0, 3, [], [], [[9, 3.0]]],
    "bad_gauge_time": lambda: [NOW, 0, 3, [], [], [[9, 3.0, -1]]],
}

BAD_RECORDS = {
    "undecodable": lambda rng: bytes([0xC1]) + rng.randbytes(rng.randrange(0, 40)),
    "unknown_version": lambda rng: msgspec.msgpack.encode(
        [rng.randint(5, 99), "s", [], [], [], []]  # 1 to 4 exist; a future one is refused
    ),
    "malformed_batch": lambda rng: msgspec.msgpack.encode(rng.choice([{"a": 1}, 7, "x", [], None])),
}


# Version-3 (columnar) records: events as (at, keys, paths, values, (dists, gauges)) tuples.
V3_KEYS, V3_PATHS = ("jobs", "jobs::t1"), ("count", "v")
ONE_SAMPLE = Dist(1, 5.0, 25.0, 5.0, 5.0, {81: 1})
BAD_V3_EVENTS = {
    "not_finite": lambda: (NOW, V3_KEYS, V3_PATHS, [1, math.nan], ([], [])),
    "huge_value": lambda: (NOW, V3_KEYS, V3_PATHS, [1, 2.0**62], ([], [])),
    "too_old": lambda: (NOW - 30 * 86400, V3_KEYS, V3_PATHS, [1, 1], ([], [])),
    "too_far_in_future": lambda: (NOW + 7 * 86400, V3_KEYS, V3_PATHS, [1, 1], ([], [])),
    "key_too_long": lambda: (NOW, ("x" * 300,), V3_PATHS, [1, 1], ([], [])),
    "bad_key": lambda: (NOW, ("",), V3_PATHS, [1, 1], ([], [])),
    "too_deep": lambda: (NOW, V3_KEYS, (".".join("abcdefghij"),), [1], ([], [])),
    "bad_path": lambda: (NOW, V3_KEYS, ("a..b",), [1], ([], [])),
    "negative_sample": lambda: (
        NOW, V3_KEYS, (), [], ([("lat", Dist(1, -5.0, 25.0, -5.0, -5.0, {81: 1}))], [])
    ),
    "bad_sketch_bucket": lambda: (
        NOW, V3_KEYS, (), [], ([("lat", Dist(1, 5.0, 25.0, 5.0, 5.0, {40_000: 1}))], [])
    ),
    "bad_distribution": lambda: (
        NOW, V3_KEYS, (), [], ([("lat", Dist(3, 5.0, 25.0, 5.0, 5.0, {81: 1}))], [])
    ),
    "path_kind_conflict": lambda: (NOW, V3_KEYS, V3_PATHS, [1, 1], ([("count", ONE_SAMPLE)], [])),
    "bad_gauge_time": lambda: (NOW, V3_KEYS, (), [], ([], [("q", 3.0, -1)])),
}  # fmt: skip
V3_COLUMN = {name: 6 + i for i, (name, _) in enumerate(COLUMN_TYPES)}  # field index in the record


def v3_record(events: list[tuple], version: int = 3) -> list:
    return msgspec.msgpack.decode(ColumnsEncoder("fuzz", version).encode(events))


def with_type(fields: list, name: str, code: str) -> None:
    """Say in a version-4 record's ``dtypes`` that column ``name`` is stored as ``code``."""
    i = V3_COLUMN[name] - 6
    fields[-1] = fields[-1][:i] + code + fields[-1][i + 1 :]


def broken_v3(rng: random.Random) -> tuple[str, bytes]:
    """A version-3 or -4 record whose columns do not fit together, and its reason."""
    good = (NOW, V3_KEYS, V3_PATHS, [1, 2], ([("lat", ONE_SAMPLE)], []))
    version = rng.choice([3, 4])
    fields = v3_record([good] * rng.randint(1, 5), version)
    n = fields[5]
    kinds = ["bad_column", "bad_offsets", "too_many_rows", "malformed_columns"]
    kind = rng.choice(kinds + ["bad_dtype"] * (version == 4))
    if kind == "bad_column":  # a column that is not whole items, or too short for the events
        names = ["at", "values", "keyset", "dist_sum"] if version == 3 else ["at", "dist_sum"]
        name = rng.choice(names)
        fields[V3_COLUMN[name]] = fields[V3_COLUMN[name]][: -rng.randint(1, 3)]
    elif kind == "bad_offsets":  # offsets that go backwards or past their column
        offsets = list(range(0, 2 * n + 1, 2))
        offsets[rng.randrange(1, n + 1)] = rng.choice([-1, 2 * n + 5])
        fields[V3_COLUMN["value_offsets"]] = b"".join(
            o.to_bytes(4, "little", signed=True) for o in offsets
        )
        if version == 4:
            with_type(fields, "value_offsets", "i")
    elif kind == "bad_dtype":  # a type the column cannot take, or types missing
        if rng.random() < 0.5:
            with_type(fields, rng.choice(["at", "keyset", "shape"]), rng.choice("dvQz"))
        else:
            fields[-1] = fields[-1][: rng.randrange(len(fields[-1]))]
    elif kind == "too_many_rows":
        fields[5] = rng.choice([2**31, 2**40])
    else:  # a column of the wrong type
        fields[V3_COLUMN[rng.choice(list(V3_COLUMN))]] = rng.choice(["text", 7, [1.0, 2.0], None])
    return kind, msgspec.msgpack.encode(fields)


def build_v3(rng: random.Random, expected: Expected, reasons: Counter) -> tuple[bytes, int]:
    """A version-3 record of valid and invalid events (bad ones counted in ``reasons``)."""
    events, bad = [], 0
    for _ in range(rng.randint(1, 12)):
        if rng.random() < 0.5:
            name = rng.choice(list(BAD_V3_EVENTS))
            events.append(BAD_V3_EVENTS[name]())
            reasons[name] += 1
            bad += 1
        else:
            at, v = NOW - rng.randrange(3600), rng.randrange(100)
            events.append((at, V3_KEYS, V3_PATHS, [1, v], ([], [])))
            expected.add_raw(V3_KEYS, {"count": 1, "v": v}, at)
    if rng.random() > 0.2:
        return ColumnsEncoder("fuzz", rng.choice([3, 4])).encode(events), bad
    # one more event, naming a keyset the record does not have
    events.append((NOW, V3_KEYS, V3_PATHS, [1, 1], ([], [])))
    fields = v3_record(events)
    keysets = bytearray(fields[V3_COLUMN["keyset"]])
    keysets[-4:] = (99).to_bytes(4, "little")
    fields[V3_COLUMN["keyset"]] = bytes(keysets)
    reasons["bad_reference"] += 1
    return msgspec.msgpack.encode(fields), bad + 1


def build(rng: random.Random, expected: Expected) -> tuple[list[bytes | None], Counter, list[int]]:
    """Records mixing valid and malformed events, plus whole malformed records; the reasons
    and, per record, how many of its items (the record, or its events) are bad."""
    records: list[bytes | None] = []
    reasons: Counter = Counter()
    bad_per_record: list[int] = []
    while sum(bad_per_record) < 10_000:
        if rng.random() < 0.2:
            kind = rng.choice([*BAD_RECORDS, "empty_record"])
            records.append(None if kind == "empty_record" else BAD_RECORDS[kind](rng))
            reasons[kind] += 1
            bad_per_record.append(1)
            continue
        if rng.random() < 0.1:
            kind, record = broken_v3(rng)
            records.append(record)
            reasons[kind] += 1
            bad_per_record.append(1)
            continue
        if rng.random() < 0.25:
            record, bad = build_v3(rng, expected, reasons)
            records.append(record)
            bad_per_record.append(bad)
            continue
        events, bad_items = [], 0
        v2 = rng.random() < 0.3
        for _ in range(rng.randint(1, 12)):
            if v2 and rng.random() < 0.5:
                name = rng.choice(list(BAD_KINDS))
                events.append(BAD_KINDS[name]())
                reasons[name] += 1
                bad_items += 1
            elif rng.random() < 0.5:
                name = rng.choice(list(BAD_EVENTS))
                events.append(BAD_EVENTS[name]())
                reasons[REASON[name]] += 1
                bad_items += 1
            else:
                at, v = NOW - rng.randrange(3600), rng.randrange(100)
                events.append([at, 0, 0, [1, v]])
                expected.add_raw(("jobs", "jobs::t1"), {"count": 1, "v": v}, at)
        if v2:
            record = [2, "fuzz", V2_STRINGS, KEYSETS, V2_SHAPES, events]
        else:
            record = [1, "fuzz", STRINGS, KEYSETS, SHAPES, events]
        records.append(msgspec.msgpack.encode(record))
        bad_per_record.append(bad_items)
    return records, reasons, bad_per_record


async def produce(bootstrap: str, topic: str, records: list[bytes | None]) -> list[str]:
    """Send every record; its ``topic:partition:offset`` (as dead letters name their source)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic, r, key=None if r is not None else b"tombstone", partition=i % 4
            )
            for i, r in enumerate(records)
        ]
        sent = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [f"{topic}:{m.partition}:{m.offset}" for m in sent]


Identity = tuple[str, int]  # (source "topic:partition:offset", event index or -1)


async def dead_letters(
    bootstrap: str, topic: str, want: int, timeout: float
) -> tuple[dict[Identity, set[str]], int]:
    """Reasons per distinct dead letter identity, read until ``want`` distinct ones arrived
    (and a second longer, so extra ones are seen too); and how many letters were read."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    seen: dict[Identity, set[str]] = {}
    letters = 0

    def take(batch: dict) -> None:
        nonlocal letters
        for records in batch.values():
            for record in records:
                headers = dict(record.headers)
                identity = (headers["source"].decode(), int(headers["index"]))
                seen.setdefault(identity, set()).add(headers["reason"].decode())
                letters += 1

    try:
        deadline = time.monotonic() + timeout
        while len(seen) < want and time.monotonic() < deadline:
            take(await consumer.getmany(timeout_ms=500))
        await asyncio.sleep(1)
        take(await consumer.getmany(timeout_ms=500))
    finally:
        await consumer.stop()
    return seen, letters


def test_malformed_records_and_events_are_dead_lettered_and_the_rest_counted(make_stack):
    stack = make_stack(partitions=4, aggregators=2)
    expected = Expected(Calendar("UTC"), ("1m", "1h", "1d"))
    records, reasons, bad_per_record = build(random.Random(3), expected)
    bad = sum(reasons.values())
    assert bad == sum(bad_per_record) >= 10_000 and expected.events > 5_000
    sources = asyncio.run(produce(stack.kafka.bootstrap, stack.config.topic, records))

    client = stack.clickhouse_client()
    want = sum(expected.totals.values())
    wait_for(
        lambda: (
            (client.query("SELECT sum(value) FROM tally.rollups").result_rows[0][0] or 0) >= want
        ),
        120,
        "valid events in the rollups",
    )
    seen, letters = asyncio.run(dead_letters(stack.kafka.bootstrap, stack.dlq_topic, bad, 60))
    # at least once: every bad item has a letter (repeats of a replayed range allowed)
    assert letters >= len(seen) == bad
    assert all(len(r) == 1 for r in seen.values()), "one item dead-lettered for two reasons"
    assert Counter(r for rs in seen.values() for r in rs) == reasons
    # the letters name exactly the records holding bad items, each with as many items as it has
    per_source = Counter(source for source, _ in seen)
    want = {src: n for src, n in zip(sources, bad_per_record, strict=True) if n}
    assert per_source == want

    metrics = [stack.metrics(p) for p in stack.aggregators]
    counted = Counter()
    for m in metrics:
        for name, value in m.items():
            if name.startswith("tally_dead_letters_total{"):
                counted[name.split("reason=")[1].rstrip("}")] += int(value)
    # the counter counts letters queued, replays included: at least the distinct ones
    assert set(counted) == set(reasons) and all(counted[r] >= n for r, n in reasons.items())
    assert all(p.poll() is None for p in stack.aggregators), "an aggregator died"
    assert stack.stop_aggregators() == [0, 0]
    result = compare(expected.totals, fetch_totals(client))
    assert result.exact, result.mismatches
