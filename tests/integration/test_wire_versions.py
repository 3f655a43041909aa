"""Wire versions 1 to 4 interleaved on one real Kafka topic fold to exactly the rollups of
the same events sent one way (the version-1/2 encoder, replayed by a second aggregator)."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import replace

import msgspec
import pytest

from tally.ingest.flatten import flatten_all
from tally.ingest.kinds import dist, gauge
from tally.kafka.admin import create_topic
from tally.loadtest.catchup import CatchupSpec, run_catchup
from tally.loadtest.endpoints import Endpoints
from tally.loadtest.workloads import Cardinality, Workload
from tally.schemas.limits import Limits
from tally.schemas.wire import BatchEncoder
from tally.schemas.wire_columns import ColumnsEncoder

from .conftest import wait_for
from .helpers_dlq import produce_raw

pytestmark = [pytest.mark.integration]

# Every rollup, with distributions' merged sketches and gauges' last readings (all values are
# integers, so sums are exact whatever order ClickHouse merges them in).
ROLLUPS = """
SELECT granularity, key, toUnixTimestamp(bucket) AS b, path, sum(value), sumMap(sketch),
       min(vmin), max(vmax), max(last)
FROM {db}.rollups GROUP BY granularity, key, bucket, path ORDER BY granularity, key, b, path
"""


def events(n: int, now: int) -> list[tuple]:
    """The seeds' mix, plus job runs with distributions and gauges, flattened as ``track``."""
    rng = random.Random(18)
    workload = Workload(Cardinality(products=50), seed=18)
    out = []
    for e in workload.events(n, now - 1800, 1800):
        values = dict(e.values)
        if rng.random() < 0.4:  # a job run: duration and queue lag as distributions, a gauge
            values = {
                "count": 1,
                "run_ms": dist(rng.randint(1, 60_000)),
                "lag_ms": dist(rng.choice([0, rng.randint(1, 30_000)])),
                "queue_depth": gauge(rng.randint(0, 500), at=e.at + rng.randint(0, 59)),
            }
            keys = ("jobs", f"jobs::t{rng.randrange(5)}")
        else:
            keys = e.keys
        paths, numbers, kinds = flatten_all(values, Limits())
        out.append((e.at, keys, paths, numbers) + ((kinds,) if kinds else ()))
    return out


def test_v1_to_v4_on_one_topic_fold_like_one_version(make_stack):
    stack = make_stack(partitions=2, aggregators=1)
    bootstrap, topic = stack.kafka.bootstrap, stack.config.topic
    now = int(time.time())
    tracked = events(6_000, now)
    rng = random.Random(3)
    mixed, one_way, versions = [], [], Counter()
    i = 0
    while i < len(tracked):
        chunk = tracked[i : i + rng.randint(1, 60)]
        partition = (i // 60) % 2
        plain = [e for e in chunk if len(e) == 4] if rng.random() < 0.3 else chunk
        for part in (plain, [e for e in chunk if e not in plain]):
            if not part:
                continue
            columns = rng.random() < 0.5
            encoder = ColumnsEncoder("mix", rng.choice([3, 4])) if columns else BatchEncoder("mix")
            payload = encoder.encode(part)
            versions[msgspec.msgpack.decode(payload)[0]] += 1
            mixed.append((partition, payload, None))
            one_way.append((partition, BatchEncoder("one").encode(part), None))
        i += len(chunk)
    assert all(versions[v] >= 20 for v in (1, 2, 3, 4)), versions
    asyncio.run(produce_raw(bootstrap, topic, mixed))
    client = stack.clickhouse_client()
    counted = len([e for e in tracked if "count" in e[2]])

    def folded(db: str) -> float:
        query = f"SELECT sum(value) FROM {db}.rollups WHERE granularity = '1m' AND path = 'count'"
        return client.query(query).result_rows[0][0] or 0

    wait_for(lambda: folded("tally") >= counted, 180, "the mixed topic in the rollups")
    (proc,) = stack.aggregators
    letters = {k: v for k, v in stack.metrics(proc).items() if k.startswith("tally_dead_letters")}
    assert not any(letters.values()), letters
    assert stack.stop_aggregators() == [0]

    asyncio.run(create_topic(bootstrap, "one.way", 2))
    asyncio.run(produce_raw(bootstrap, "one.way", one_way))
    base = Endpoints(
        bootstrap=bootstrap,
        clickhouse_url=stack.clickhouse.url,
        clickhouse_user=stack.clickhouse_user,
        clickhouse_password=stack.clickhouse_password,
    )
    result = run_catchup(
        CatchupSpec(
            endpoints=replace(base, topic="one.way"),
            workdir=stack.workdir / "oneway",
            group="one-way",
            database="oneway",
            max_s=300,
            session_timeout_ms=30_000,
        )
    )
    assert result.complete and result.events == len(tracked)
    wait_for(lambda: folded("oneway") >= counted, 60, "the one-way topic in the rollups")
    mixed_rows = client.query(ROLLUPS.format(db="tally")).result_rows
    one_way_rows = client.query(ROLLUPS.format(db="oneway")).result_rows
    assert len(mixed_rows) > 1_000
    assert any(row[5] for row in mixed_rows), "no distribution reached the rollups"
    assert mixed_rows == one_way_rows
