"""``check`` of the consumer services: ClickHouse reached (DDL applied), the topic's partitions."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_aggregator_and_trace_writer_check_report_the_topic(make_stack):
    stack = make_stack(partitions=3, aggregators=1, start_aggregators=False)
    env = stack.aggregator_env()
    common = ["--bootstrap", stack.kafka.bootstrap, "--clickhouse-url", stack.clickhouse.url]
    user = ["--clickhouse-user", stack.clickhouse.login("aggregator")[0]]
    aggregator = subprocess.run(
        [sys.executable, "-m", "tally.aggregator", "check", *common, *user,
         "--topic", stack.config.topic],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert aggregator.returncode == 0, aggregator.stderr[-2000:]
    assert f"topic {stack.config.topic}: 3 partitions" in aggregator.stdout
    client = stack.clickhouse_client()
    assert client.command("EXISTS TABLE tally.rollups") == 1
    traces_user, traces_password = stack.clickhouse.login("traces")
    writer = subprocess.run(
        [sys.executable, "-m", "tally.traces", "check", *common, "--clickhouse-user", traces_user],
        capture_output=True, text=True, timeout=120,
        env={**env, "TALLY_CLICKHOUSE_PASSWORD": traces_password},
    )  # fmt: skip
    assert writer.returncode == 0, writer.stderr[-2000:]
    assert writer.stdout.startswith("ok: ClickHouse")
    assert client.command("EXISTS TABLE tally.trace_lines") == 1
