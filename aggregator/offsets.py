"""Where a group starts: committed offsets, and the refusal to guess on a new group."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, for_code
from aiokafka.protocol.commit import OffsetFetchRequest
from aiokafka.structs import OffsetAndMetadata, TopicPartition


class StartRefused(RuntimeError):
    """The aggregator must not start as configured; the message says what to do."""


async def group_offsets(
    admin: AIOKafkaAdminClient, group: str, timeout: float = 60
) -> dict[TopicPartition, OffsetAndMetadata]:
    """Every committed offset of ``group``, retrying while its coordinator loads.

    aiokafka's ``list_consumer_group_offsets`` ignores the response's group-level error and
    answers ``{}`` while the coordinator loads, which would look like a new group.
    """
    async with asyncio.timeout(timeout):
        while True:
            try:
                coordinator = await admin.find_coordinator(group)
                response = await admin._send_request(OffsetFetchRequest(group, None), coordinator)
            except KafkaError as exc:
                if not exc.retriable:
                    raise
                await asyncio.sleep(0.2)
                continue
            error = for_code(getattr(response, "error_code", 0))
            if error.errno == 0:
                break
            if not error.retriable:
                raise error(f"offset fetch for group {group!r}")
            await asyncio.sleep(0.2)
    offsets = {}
    for topic, parts in response.topics:
        for partition, offset, metadata, _code in parts:
            if offset >= 0:
                offsets[TopicPartition(topic, partition)] = OffsetAndMetadata(offset, metadata)
    return offsets


async def check_initial_offset(
    admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer, group: str, topic: str
) -> None:
    """Refuse a group with no committed offset on ``topic`` while the topic holds records.

    Starting from ``earliest`` would count the whole retained topic again (a renamed group,
    or offsets expired after ``offsets.retention.minutes``); ``latest`` would skip it. Only
    the operator knows which is right, so ``--initial-offset`` must say it.
    """
    committed = await group_offsets(admin, group)
    if any(tp.topic == topic for tp in committed):
        return
    # The consumer is not subscribed yet, so its own metadata does not list the topic.
    cluster = await consumer._client.fetch_all_metadata()
    partitions = [TopicPartition(topic, p) for p in cluster.partitions_for_topic(topic) or ()]
    if not partitions:
        return
    first = await consumer.beginning_offsets(partitions)
    last = await consumer.end_offsets(partitions)
    held = sum(max(0, last[tp] - first[tp]) for tp in partitions)
    if held:
        raise StartRefused(
            f"group {group!r} has no committed offset on topic {topic!r}, which holds {held}"
            " records: pass --initial-offset earliest (count them) or latest (skip them)"
        )
