"""Kafka admin helpers the product uses: create a topic, count a topic's partitions."""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from tally.kafka.security import KafkaSecurity


async def create_topic(
    bootstrap: str,
    name: str,
    partitions: int,
    replication: int = 1,
    config: dict[str, str] | None = None,
    *,
    timeout: float = 30,
) -> None:
    """Create a topic (an existing one is fine) and wait until every partition has a leader."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="tally-create-topic")
    await admin.start()
    try:
        topic = NewTopic(name, partitions, replication, topic_configs=dict(config or {}))
        response = await admin.create_topics([topic], timeout_ms=int(timeout * 1000))
        for _topic, code, *rest in response.topic_errors:
            if code and code != TopicAlreadyExistsError.errno:
                raise for_code(code)(f"create topic {name!r}: {rest[0] if rest else ''}")
        await _wait_for_leaders(admin, name, timeout)
    finally:
        await admin.close()


async def _wait_for_leaders(admin: AIOKafkaAdminClient, name: str, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while True:
            (meta,) = await admin.describe_topics([name])
            parts = meta["partitions"]
            if meta["error_code"] == 0 and parts and all(p["leader"] >= 0 for p in parts):
                return
            await asyncio.sleep(0.1)


async def count_partitions(bootstrap: str, topic: str, security: KafkaSecurity) -> int:
    """How many partitions ``topic`` has (0 if it does not exist; raises if Kafka is down)."""
    # The admin client, not a group-less consumer: aiokafka's consumer.stop() raises
    # CancelledError from its offset-reset task when it never joined a group.
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **security.aiokafka_kwargs())
    await admin.start()
    try:
        (found,) = await admin.describe_topics([topic])
        partitions = found.get("partitions") or [] if found.get("error_code", 0) == 0 else []
        return len(partitions)
    finally:
        await admin.close()
