"""Which replica evaluates: the member of a Kafka consumer group that owns partition 0 of a
one-partition lease topic. Kafka's group protocol gives the partition to exactly one live
member; when it dies (or stops heartbeating for the session timeout) another member gets it.

The holder re-checks the lease right before writing each monitor's state and before every
delivery, so a replica that lost the lease stops at the next check. Notifications carry
deterministic ids and are inserted only if absent, so a transition judged twice during a
hand-over is stored once; a delivery re-reads the row's status first. Not fenced: a holder
paused longer than the session timeout between its check and its write (a GC or VM pause) can
still write once after losing the lease; the ids keep that from becoming a second notice
unless both replicas deliver the same pending row in that window.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from tally.kafka.security import KafkaSecurity

log = logging.getLogger("tally.monitors.lease")


@dataclass
class Lease:
    """Hold-or-not, answered by the group coordinator."""

    bootstrap: str
    topic: str = "tally.monitors.lease"
    group: str = "tally-monitors"
    session_timeout_ms: int = 10_000
    heartbeat_ms: int = 1_000
    security: KafkaSecurity = field(default_factory=KafkaSecurity)
    _consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        kwargs = self.security.aiokafka_kwargs()
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, **kwargs)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(self.topic, 1, 1)])
        except TopicAlreadyExistsError:
            pass
        finally:
            await admin.close()
        self._consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            group_id=self.group,
            enable_auto_commit=False,
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=self.heartbeat_ms,
            **kwargs,
        )
        await self._consumer.start()

    async def held(self) -> bool:
        """True while this member owns partition 0 (drives the group protocol too)."""
        if self._consumer is None:
            return False
        try:
            await self._consumer.getmany(timeout_ms=0)
        except Exception as exc:  # a rebalance in progress, the coordinator moving
            log.debug("lease poll: %s", exc)
            await asyncio.sleep(0)
        return TopicPartition(self.topic, 0) in self._consumer.assignment()

    @property
    def generation(self) -> int:
        """The group generation the lease was granted in (-1 when unknown)."""
        coordinator = getattr(self._consumer, "_coordinator", None)
        return int(getattr(coordinator, "generation", -1) or -1)

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None


@dataclass
class AlwaysHeld:
    """A single replica (or a backtest): always the holder."""

    generation: int = 0

    async def start(self) -> None:
        return None

    async def held(self) -> bool:
        return True

    async def close(self) -> None:
        return None
