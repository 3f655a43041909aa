"""The order `make test`'s two workers take the test files in: the longest first.

xdist's ``--dist loadfile`` hands out whole files in collection order (with its default
reordering, the files with the most tests first). The slow files have one to three tests each,
so they all came last, and a worker queues up to three files ahead: the last minutes of the
run were a few long fault files on one worker while the other had finished. Starting the long
files first lets the many short files fill in at the end (longest processing time first).
``make test`` passes ``--no-loadscope-reorder`` so xdist keeps this order.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# Seconds per file, measured one file at a time on the 2-core box with a load average of ~10
# (issue #21.21). Only the relative sizes matter; a file not listed counts as short.
EXPECTED_S: dict[str, int] = {
    "integration/test_faults_cluster.py": 270,
    "integration/test_tally_up_cluster.py": 95,
    "integration/test_faults_outages.py": 232,
    "integration/test_dashboard_browser.py": 150,
    "integration/test_tally_up.py": 135,
    "integration/test_pipeline.py": 128,
    "integration/test_monitors_e2e.py": 88,
    "integration/test_faults_poison_insert.py": 78,
    "integration/test_faults_kill9.py": 74,
    "integration/test_loadtest_small.py": 68,
    "integration/test_aggregator_lag_metrics.py": 60,
    "integration/test_kafka_broker.py": 60,
    "integration/test_traces_pipeline.py": 60,
    "integration/test_faults_dead_letters.py": 58,
    "integration/test_demo.py": 57,
    "integration/test_faults_offsets.py": 57,
    "integration/test_monitors_replicas.py": 53,
    "integration/test_faults_sigterm.py": 49,
    "integration/test_faults_memory_bytes.py": 46,
    "integration/test_cli_read.py": 45,
    "integration/test_faults_memory_bound.py": 40,
    "integration/test_traces_browser.py": 35,
    "integration/test_jobs_queries.py": 30,
    "integration/test_client_close.py": 28,
    "integration/test_sampler.py": 25,
    "integration/test_faults_replay_storm.py": 24,
}

TESTS = Path(__file__).resolve().parent


def expected_seconds(path: Path) -> int:
    """The measured duration of the test file at ``path`` (0 if not listed)."""
    try:
        return EXPECTED_S.get(path.resolve().relative_to(TESTS).as_posix(), 0)
    except ValueError:
        return 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest files first; the rest keep their order (the sort is stable)."""
    items.sort(key=lambda item: -expected_seconds(item.path))
