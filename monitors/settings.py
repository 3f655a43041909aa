"""Settings of the monitor service, declared once (one row per setting) and built once at the
entry point (``tally monitors run|check``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tally.engine.settings import CONSUMER, PROCESS
from tally.kafka.security import KafkaSecurity
from tally.kafka.settings import (
    AGGREGATOR_GROUP,
    BOOTSTRAP,
    DEFAULT_BOOTSTRAP,
    EVENTS_TOPIC,
    SECURITY,
    TOPIC,
    security_from,
)
from tally.read.settings import ReadSettings
from tally.schemas.settings_table import (
    BadSetting,
    Setting,
    SettingsTable,
    optional_int,
    positive_float,
    positive_int,
    switch,
    text,
)


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


def grace(value: str) -> float:
    """Seconds >= 0."""
    number = float(value)
    if number < 0:
        raise ValueError(f"must be >= 0, not {value}")
    return number


_D = MonitorSettings(paths=())
# The service's own rows; ``up.read_target.READ_TARGET`` adds where ClickHouse is.
SETTINGS = (
    SettingsTable((
        Setting("paths", Path, None, "PATHS", None,
                "monitor files or directories (*.yaml)", positional=True),
        BOOTSTRAP,
        TOPIC,
        replace(CONSUMER["group"], help="the aggregators' consumer group (their offsets say"
                " which buckets are durable)"),
        Setting("grace", grace, _D.grace_s, "--grace", "TALLY_MONITORS_GRACE_S",
                "seconds the client may hold an event before sending it"),
        Setting("tick", positive_float, _D.tick_s, "--tick", "TALLY_MONITORS_TICK_S",
                "seconds between evaluations"),
        Setting("base_url", text, _D.base_url, "--base-url", "TALLY_DASHBOARD_URL",
                "dashboard URL for links"),
        Setting("no_lease", switch, False, "--no-lease", "TALLY_MONITORS_NO_LEASE",
                "evaluate on this replica without electing one via a Kafka consumer group"),
        Setting("lease_session_ms", positive_int, _D.lease_session_ms, "--lease-session-ms",
                "TALLY_MONITORS_LEASE_SESSION_MS",
                "lease group session timeout: how fast a replica takes over"),
        Setting("metrics_port", optional_int, None, "--metrics-port",
                "TALLY_MONITORS_METRICS_PORT",
                "serve /metrics on this port (0: a free one); not served by default"),
        PROCESS["metrics_host"],
        Setting("delivery_budget", positive_float, _D.delivery_budget_s, "--delivery-budget",
                "TALLY_MONITORS_DELIVERY_BUDGET_S",
                "seconds one delivery may take, all its retries included"),
    ))
    + SECURITY
)  # fmt: skip


def from_values(values: Mapping[str, Any], read: ReadSettings) -> MonitorSettings:
    """The settings of resolved ``SETTINGS`` values over ``read``."""
    if not values["paths"]:
        raise BadSetting(SETTINGS["paths"], "name at least one monitor file or directory")
    return MonitorSettings(
        paths=tuple(values["paths"]), read=read,
        bootstrap=values["bootstrap"], topic=values["topic"], group=values["group"],
        grace_s=values["grace"], tick_s=values["tick"], base_url=values["base_url"],
        lease=not values["no_lease"], lease_session_ms=values["lease_session_ms"],
        security=security_from(values), metrics_port=values["metrics_port"],
        metrics_host=values["metrics_host"], delivery_budget_s=values["delivery_budget"],
    )  # fmt: skip


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
