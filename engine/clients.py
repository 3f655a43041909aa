"""The Kafka clients of one engine process: group consumer, admin, dead-letter producer.

``close`` stops the consumer first, while the admin is still open: leaving the group can run
one more rebalance, whose callbacks must find every client (or, once ``closing``, skip their
work cleanly; ``ClientsClosed`` says a client is gone), never an assertion.
"""

from __future__ import annotations

import contextlib

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from tally.engine.deadletter import DeadLetters
from tally.engine.protocols import EngineSettings


class ClientsClosed(RuntimeError):
    """A Kafka client was needed after ``KafkaClients.close`` (a rebalance while leaving)."""


class KafkaClients:
    """Opened together at start (retried as a whole), closed together at any stage."""

    def __init__(self) -> None:
        self.closing = False
        self.consumer: AIOKafkaConsumer | None = None
        self.admin: AIOKafkaAdminClient | None = None
        self.producer: AIOKafkaProducer | None = None
        self.dead_letters: DeadLetters | None = None

    async def start(self, s: EngineSettings) -> AIOKafkaConsumer:
        """Start the admin, the dead-letter producer and the (not yet subscribed) consumer."""
        self.closing = False
        security = s.security.aiokafka_kwargs()
        self.admin = AIOKafkaAdminClient(bootstrap_servers=s.bootstrap_servers, **security)
        await self.admin.start()
        # Not idempotent: after a rejected (too large) batch an idempotent aiokafka producer
        # fails every later send with OutOfOrderSequenceNumber. Dead letters are at-least-once.
        self.producer = AIOKafkaProducer(
            bootstrap_servers=s.bootstrap_servers,
            acks="all",
            compression_type="lz4",
            **security,
        )
        await self.producer.start()
        self.dead_letters = DeadLetters(self.producer, s.dead_letter_topic, s.dead_letter_max_bytes)
        # Fetched records are memory too: keep the fetch buffers well under the fold budget.
        fetch_max = min(64 * 2**20, max(2**20, s.max_fold_bytes // 4))
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap_servers,
            group_id=s.group,
            client_id=s.client_id,
            enable_auto_commit=False,
            auto_offset_reset=s.initial_offset or "earliest",
            max_poll_records=s.max_poll_records,
            fetch_max_bytes=fetch_max,
            max_partition_fetch_bytes=min(8 * 2**20, fetch_max),
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=s.heartbeat_interval_ms,
            max_poll_interval_ms=s.max_poll_interval_ms,
            rebalance_timeout_ms=max(s.max_poll_interval_ms, 60_000),
            **security,
        )
        await self.consumer.start()
        return self.consumer

    def require_admin(self) -> AIOKafkaAdminClient:
        """The admin client; ``ClientsClosed`` once closed."""
        if self.admin is None:
            raise ClientsClosed("the admin client is closed")
        return self.admin

    async def close(self) -> None:
        """Close whatever was opened; safe to call at any stage.

        The consumer stops first: a rebalance while it leaves the group still finds the admin.
        """
        self.closing = True
        consumer = self.consumer
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()
        self.consumer = None
        producer, self.producer = self.producer, None
        admin, self.admin = self.admin, None
        for close in (producer.stop if producer else None, admin.close if admin else None):
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()
