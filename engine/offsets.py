"""Where a group starts: committed offsets, and the refusal to guess on a new group."""

from __future__ import annotations

import asyncio
import os
import time

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


def process_started_at() -> float:
    """Unix time this process started (Linux: from ``/proc``, to 10 ms; else module import)."""
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            ticks = int(stat.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
            age = float(uptime.read().split()[0]) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return _IMPORTED_AT
    return time.time() - max(0.0, age)


_IMPORTED_AT = time.time()


async def check_initial_offset(
    admin: AIOKafkaAdminClient,
    consumer: AIOKafkaConsumer,
    group: str,
    topic: str,
    started_at: float,
) -> bool:
    """True if ``group`` is new: no committed offset on ``topic``, and every record the topic
    holds was written after ``started_at`` (the topic was empty when this aggregator started,
    so the application's first records count from the beginning). False if the group has
    committed offsets.

    A new group over records older than ``started_at`` is refused (:class:`StartRefused`):
    starting from ``earliest`` would count the whole retained topic again (a renamed group, or
    offsets expired after ``offsets.retention.minutes``); ``latest`` would skip it. Only the
    operator knows which is right, so ``--initial-offset`` must say it.
    """
    committed = await group_offsets(admin, group)
    if any(tp.topic == topic for tp in committed):
        return False
    # The consumer is not subscribed yet, so its own metadata does not list the topic.
    cluster = await consumer._client.fetch_all_metadata()
    partitions = [TopicPartition(topic, p) for p in cluster.partitions_for_topic(topic) or ()]
    if not partitions:
        return True
    first = await consumer.beginning_offsets(partitions)
    last = await consumer.end_offsets(partitions)
    held = [tp for tp in partitions if last[tp] > first[tp]]
    if not held:
        return True
    # The first offset written at or after started_at; None: every record is older.
    since = await consumer.offsets_for_times({tp: int(started_at * 1000) for tp in held})
    older = sum((since[tp].offset if since[tp] else last[tp]) - first[tp] for tp in held)
    if older:
        raise StartRefused(
            f"group {group!r} has no committed offset on topic {topic!r}, which holds {older}"
            " records from before this aggregator started: pass --initial-offset earliest"
            " (count them) or latest (skip them)"
        )
    return True
