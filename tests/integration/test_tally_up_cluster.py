"""``tally up --kafka-brokers 3``: a 3-node cluster, topics replicated 3 times with
min.insync.replicas=2, and events tracked through it reach the rollups."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tally.embedded.kafka_node import free_ports
from tests.integration.conftest import wait_for
from tests.integration.test_tally_up import Up, _send, _series_count

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


def consecutive_free_ports(count: int) -> int:
    """A port ``p`` with ``p`` .. ``p + count - 1`` all free on 127.0.0.1."""
    for base in range(20_000, 60_000, 97):
        socks = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise AssertionError("no free port range")


async def topic_replication(bootstrap: str, topic: str) -> tuple[set[int], str]:
    """(replica counts of the partitions, the topic's min.insync.replicas)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (meta,) = await admin.describe_topics([topic])
        (configs,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    entries = {name: value for name, value, *_ in configs.resources[0][4]}
    return {len(p["replicas"]) for p in meta["partitions"]}, entries["min.insync.replicas"]


def test_up_with_three_brokers_replicates_and_counts(tmp_path):
    data_dir = tmp_path / "data"
    kafka = consecutive_free_ports(3)
    clickhouse, api_port = free_ports(2)
    api = f"http://127.0.0.1:{api_port}"
    up = Up(data_dir, [kafka, clickhouse, api_port], ("--kafka-brokers", "3"))
    bootstrap = ",".join(f"127.0.0.1:{kafka + i}" for i in range(3))
    try:
        up.wait_up(timeout=360)
        assert f"Kafka       {bootstrap}" in up.text()
        for topic in ("tally.events", "tally.events.dlq", "tally.traces"):
            replicas, min_isr = asyncio.run(topic_replication(bootstrap, topic))
            assert (replicas, min_isr) == ({3}, "2"), topic
        _send(bootstrap, 120)
        token = (data_dir / "secrets" / "api-read-token").read_text().strip()
        wait_for(lambda: _series_count(api, token) == 120, 180, "120 events in the rollups")
        assert up.interrupt() == 0
        assert "stopped cleanly" in up.text()
    finally:
        if up.proc.poll() is None:
            up.proc.kill()
