"""Credentials pass through configuration and never reach the logs; names are validated."""

from __future__ import annotations

import time

import pytest

from tally.ingest import ClientSettings, Tracker

from .conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.faults]

SECRET = "s3cr3t-Pa55word"


def test_clickhouse_password_is_used_and_never_logged(make_stack):
    stack = make_stack(
        partitions=2, aggregators=1, clickhouse_user="tally", clickhouse_password=SECRET
    )
    tracker = Tracker(ClientSettings(bootstrap_servers=stack.kafka.bootstrap, strict=True))
    tracker.track("secure", {"count": 1})
    assert tracker.flush(30)
    tracker.close()
    client = stack.clickhouse_client()
    query = "SELECT sum(value) FROM tally.rollups_1m WHERE key = 'secure'"
    wait_for(lambda: client.query(query).result_rows[0][0] == 1, 60, "the event")
    # A second aggregator with a wrong password keeps retrying instead of crashing.
    stack.config.env["TALLY_CLICKHOUSE_PASSWORD"] = "wrong-" + SECRET
    wrong = stack.start_aggregator()
    time.sleep(4)
    assert wrong.poll() is None
    assert stack.stop_aggregators() == [0, 0]
    logs = "".join(p.read_text() for p in stack.workdir.glob("aggregator-*.log"))
    assert "AUTHENTICATION_FAILED" in logs or "516" in logs
    assert SECRET not in logs
