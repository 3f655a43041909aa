from dataclasses import replace

import pytest

from tally.loadtest.bench_catchup_dist import best_by_cpu
from tally.loadtest.catchup import CatchupResult

BASE = CatchupResult(
    events=10, records=1, complete=True, wall_s=1.0, cpu_s=1.0, events_per_s=10,
    events_per_cpu_s=10, clickhouse_cpu_s=None, rows_out=1, flushes=1, database="d",
    group="g", log="l",
)  # fmt: skip


def test_best_by_cpu_skips_incomplete_replays_and_needs_one() -> None:
    slow = replace(BASE, cpu_s=2.0)
    fast_but_incomplete = replace(BASE, cpu_s=0.1, complete=False)
    assert best_by_cpu([slow, fast_but_incomplete, BASE]) is BASE
    with pytest.raises(RuntimeError):
        best_by_cpu([fast_but_incomplete])
