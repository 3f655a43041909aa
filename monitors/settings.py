"""Settings of the monitor service, built once at the entry point."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tally.kafka.security import KafkaSecurity
from tally.kafka.settings import AGGREGATOR_GROUP, DEFAULT_BOOTSTRAP, EVENTS_TOPIC
from tally.read.settings import ReadSettings


@dataclass(frozen=True)
class MonitorSettings:
    """Where definitions, rollups and the aggregators' offsets are, and how to tick."""

    paths: tuple[Path, ...]
    read: ReadSettings = field(default_factory=ReadSettings)
    bootstrap: str | None = DEFAULT_BOOTSTRAP  # None: wall-clock watermark (no Kafka)
    topic: str = EVENTS_TOPIC
    group: str = AGGREGATOR_GROUP
    grace_s: float = 10.0
    tick_s: float = 5.0
    base_url: str = ""
    lease: bool = True
    lease_topic: str = "tally.monitors.lease"
    lease_group: str = "tally-monitors"
    lease_session_ms: int = 10_000
    security: KafkaSecurity = field(default_factory=KafkaSecurity)
    metrics_port: int | None = None  # /metrics (0: a free port; None: not served)
    metrics_host: str = "127.0.0.1"
    delivery_budget_s: float = 60.0


def build_service(settings: MonitorSettings):  # -> MonitorService
    """The service for ``settings`` (not started)."""
    from tally.monitors.lease import AlwaysHeld, Lease
    from tally.monitors.notify import Notifier
    from tally.monitors.service import MonitorService
    from tally.monitors.store import Store
    from tally.monitors.watermark import KafkaWatermark, WallClock
    from tally.read import AsyncReader

    if settings.bootstrap:
        watermark = KafkaWatermark(
            settings.bootstrap, settings.topic, settings.group, settings.grace_s,
            settings.security,
        )  # fmt: skip
    else:
        watermark = WallClock(settings.grace_s)
    lease = (
        Lease(
            settings.bootstrap,
            settings.lease_topic,
            settings.lease_group,
            session_timeout_ms=settings.lease_session_ms,
            security=settings.security,
        )
        if settings.lease and settings.bootstrap
        else AlwaysHeld()
    )
    return MonitorService(
        paths=list(settings.paths), reader=AsyncReader(settings.read),
        store=Store(settings.read), watermark=watermark,
        notifier=Notifier({}, external_url=settings.base_url), lease=lease,
        base_url=settings.base_url, tick_s=settings.tick_s, metrics_port=settings.metrics_port,
        metrics_host=settings.metrics_host, budget_s=settings.delivery_budget_s,
    )  # fmt: skip
