"""Credentials pass through configuration and never reach the logs; names are validated."""

from __future__ import annotations

import time
from pathlib import Path

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


def test_stack_generates_the_password_and_hands_it_to_every_component(make_stack):
    stack = make_stack(partitions=2, aggregators=1)
    stored = stack.workdir / "clickhouse" / "secrets" / "clickhouse-password"
    password = stored.read_text().strip()
    assert stack.clickhouse_password == password == stack.clickhouse_settings.password
    assert stack.clickhouse_settings.url == stack.clickhouse.url
    aggregator = stack.aggregators[0]
    # Right after exec the new image's environment is not laid out yet (an empty read).
    environ_file = Path(f"/proc/{aggregator.pid}/environ")
    wait_for(lambda: environ_file.read_bytes() != b"", 30, "the aggregator's environment")
    environ = environ_file.read_bytes().split(b"\0")
    # Each component gets its own user's password (least privilege), never the admin one.
    user, own = stack.clickhouse.login("aggregator")
    assert user != stack.clickhouse.user and own != password
    assert f"TALLY_CLICKHOUSE_PASSWORD={own}".encode() in environ
    assert not any(password.encode() in entry for entry in environ)
    cmdline = Path(f"/proc/{aggregator.pid}/cmdline").read_bytes()
    assert password.encode() not in cmdline and own.encode() not in cmdline
    tracker = Tracker(ClientSettings(bootstrap_servers=stack.kafka.bootstrap, strict=True))
    tracker.track("generated", {"count": 2})
    assert tracker.flush(30)
    tracker.close()
    client = stack.clickhouse_client()
    query = "SELECT sum(value) FROM tally.rollups_1m WHERE key = 'generated'"
    wait_for(lambda: client.query(query).result_rows[0][0] == 2, 60, "the event")
    assert stack.stop_aggregators() == [0]
    logs = "".join(p.read_text() for p in stack.workdir.glob("aggregator-*.log"))
    assert password not in logs
