"""The documented rollup queries, run on real data that went through the whole pipeline."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from tally.ingest import ClientSettings, Tracker
from tally.read.rollup_queries import QUERIES

from .conftest import wait_for

pytestmark = pytest.mark.integration

KEY = "calc"
HOUR = 3600


def test_documented_queries_answer_from_the_rollups(make_stack):
    stack = make_stack(partitions=4, aggregators=2)
    base = (int(datetime.now(UTC).timestamp()) // HOUR - 3) * HOUR
    durations = {0: [10, 20, 30], 1: [5], 2: [7, 7]}
    tracker = Tracker(ClientSettings(bootstrap_servers=stack.kafka.bootstrap, strict=True))
    for hour, values in durations.items():
        for i, d in enumerate(values):
            ok = i != 1
            event = {
                "count": 1,
                "success": int(ok),
                "failure": int(not ok),
                "duration": {"count": 1, "sum": d, "square": d * d},
                "codes": {"OK" if ok else "TIMEOUT": 1},
                "tenants": {f"t{i}": {"count": 1}},
            }
            tracker.track([KEY, f"{KEY}::t{i}"], event, at=base + hour * HOUR + 60 * i)
    assert tracker.flush(60)
    tracker.close()
    client = stack.clickhouse_client()
    wait_for(
        lambda: (
            client.query(
                "SELECT sum(value) FROM tally.rollups_1h WHERE key = 'calc' AND path = 'count'"
            ).result_rows[0][0]
            == 6
        ),
        90,
        "six events in the rollups",
    )
    params = {
        "key": KEY,
        "start": datetime.fromtimestamp(base, UTC),
        "end": datetime.fromtimestamp(base + 3 * HOUR, UTC),
    }

    def run(name: str, granularity: str = "1h", **extra):
        return client.query(
            QUERIES[name].sql("tally", granularity), parameters={**params, **extra}
        ).result_rows

    timeline = run("timeline", path="count")
    assert [int(r[1]) for r in timeline] == [3, 1, 2]
    assert [int(r[0].timestamp()) for r in timeline] == [base, base + HOUR, base + 2 * HOUR]
    assert sum(r[1] for r in run("timeline", "1m", path="count")) == 6

    rates = run("success_rate")
    assert [(r[1], r[2], r[3]) for r in rates] == [
        (2, 3, round(2 / 3, 4)),
        (1, 1, 1.0),
        (1, 2, 0.5),
    ]

    codes = run("breakdown", prefix="codes.", suffix="")
    assert codes == [("OK", 4.0), ("TIMEOUT", 2.0)]
    tenants = run("breakdown", prefix="tenants.", suffix=".count")
    assert tenants == [("t0", 3.0), ("t1", 2.0), ("t2", 1.0)]

    stats = run("mean_stddev", measure="duration")
    assert [r[1] for r in stats] == [3, 1, 2]
    assert stats[0][2] == pytest.approx(20.0)
    assert stats[0][3] == pytest.approx(math.sqrt(((10 - 20) ** 2 + 0 + (30 - 20) ** 2) / 3))
    assert stats[2][3] == pytest.approx(0.0)
