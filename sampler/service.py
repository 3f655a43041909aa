"""The sampler service: every ``--interval`` seconds, sample each queue and track gauges.

Each queue is tracked under ``event::queue::<framework>::<queue>`` (and fanned out to
``event::queue``) with the gauges ``depth``, ``oldest_age_s``, ``workers.busy``,
``workers.idle``, ``workers.stalled`` and ``sampled_at`` (the heartbeat: when it was sampled).
A queue that cannot be read is logged and skipped for that tick; SIGTERM/SIGINT stop the loop,
flush and exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis import Redis

from tally.ingest import ClientSettings, Tracker
from tally.kafka.settings import BOOTSTRAP, DEFAULT_BOOTSTRAP, EVENTS_TOPIC, TOPIC
from tally.sampler.probes import PROBES
from tally.sampler.sample import QueueSample
from tally.schemas import settings_cli
from tally.schemas.settings_cli import build_or_usage_error, parse, service_app
from tally.schemas.settings_table import BadSetting, Setting, SettingsTable, text

log = logging.getLogger("tally.sampler")
KEY = "event::queue"


@dataclass(frozen=True)
class SamplerSettings:
    """What to sample, how often, and where to send it."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    queues: tuple[tuple[str, str], ...] = (("rq", "default"),)
    interval_s: float = 10.0
    stall_after_s: float = 300.0
    bootstrap: str = DEFAULT_BOOTSTRAP
    topic: str = EVENTS_TOPIC

    def __post_init__(self) -> None:
        for framework, queue in self.queues:
            if framework not in PROBES:
                raise ValueError(f"unknown framework {framework!r} (known: {', '.join(PROBES)})")
            if not queue:
                raise ValueError("a queue name is empty")
        if self.interval_s <= 0 or self.stall_after_s <= 0:
            raise ValueError("--interval and --stall-after must be positive")


def parse_queue(text: str) -> tuple[str, str]:
    """``framework:queue`` (the queue may contain colons, e.g. ``arq:arq:queue``)."""
    framework, _, queue = text.partition(":")
    return framework, queue


def _queues(value: str) -> tuple[tuple[str, str], ...]:
    return tuple(parse_queue(q.strip()) for q in value.split(",") if q.strip())


SETTINGS = SettingsTable(
    (
        Setting(
            "redis_url", text, SamplerSettings.redis_url, "--redis-url",
            "TALLY_SAMPLER_REDIS_URL", "Redis the queues live in",
        ),
        Setting(
            "queues", _queues, "rq:default", "--queue", "TALLY_SAMPLER_QUEUES",
            "framework:queue, repeatable (rq:default, celery:celery, dramatiq:default,"
            " arq:arq:queue); the variable comma-separated",
            repeat=True,
        ),
        Setting(
            "interval", float, SamplerSettings.interval_s, "--interval",
            "TALLY_SAMPLER_INTERVAL_S", "seconds between samples",
        ),
        Setting(
            "stall_after", float, SamplerSettings.stall_after_s, "--stall-after",
            "TALLY_SAMPLER_STALL_AFTER_S", "seconds without progress before a worker is stalled",
        ),
        BOOTSTRAP,
        TOPIC,
    )
)  # fmt: skip


def from_values(values: Mapping[str, Any]) -> SamplerSettings:
    """Settings from resolved ``SETTINGS`` values; a bad queue names ``--queue``."""
    queues = values["queues"]
    if isinstance(queues, str):
        queues = _queues(queues)
    try:
        return SamplerSettings(
            values["redis_url"], queues, values["interval"], values["stall_after"],
            values["bootstrap"], values["topic"],
        )  # fmt: skip
    except ValueError as exc:
        raise BadSetting(SETTINGS["queues"], str(exc)) from None


def from_args(argv: Sequence[str] | None, env: Mapping[str, str]) -> SamplerSettings:
    """Settings from flags, else ``TALLY_SAMPLER_*`` / ``TALLY_KAFKA_BOOTSTRAP``, else
    defaults; a bad value exits 2 with one usage error."""
    args = sys.argv[1:] if argv is None else argv
    return parse(SETTINGS, args, "python -m tally.sampler", env, from_values)


def sample_all(redis: Redis, settings: SamplerSettings) -> list[QueueSample]:
    """One sample per configured queue (a failing queue is logged and left out)."""
    out = []
    for framework, queue in settings.queues:
        try:
            out.append(PROBES[framework](redis, queue, settings.stall_after_s))
        except Exception as exc:  # one broken queue must not stop the others
            log.warning("sampling %s:%s failed: %r", framework, queue, exc)
    return out


def track(tracker: Tracker, samples: Sequence[QueueSample], at: float) -> int:
    """Track each sample's gauges; returns how many were accepted."""
    accepted = 0
    for s in samples:
        keys = [KEY, f"{KEY}::{s.framework}::{s.queue}"]
        accepted += tracker.track(keys, s.values(at), at=at, route=keys[-1])
    return accepted


async def run(settings: SamplerSettings, tracker: Tracker, stop: asyncio.Event) -> None:
    """Sample until ``stop`` is set, at fixed ticks (a slow tick does not shift the next)."""
    redis = Redis.from_url(settings.redis_url)
    try:
        next_tick = time.monotonic()
        while not stop.is_set():
            at = time.time()
            samples = await asyncio.to_thread(sample_all, redis, settings)
            track(tracker, samples, at)
            next_tick += settings.interval_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, next_tick - time.monotonic()))
    finally:
        redis.close()


def _run(values: dict[str, Any]) -> None:
    settings = build_or_usage_error(from_values, values)
    tracker = Tracker(
        ClientSettings(bootstrap_servers=settings.bootstrap, topic=settings.topic, source="sampler")
    )

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("sampling %d queue(s) every %ss", len(settings.queues), settings.interval_s)
        await run(settings, tracker, stop)

    try:
        asyncio.run(serve())
    finally:
        tracker.close()


def _check(values: dict[str, Any]) -> None:
    """Sample every queue once and print it (nothing is sent); exit 1 if one cannot be read."""
    settings = build_or_usage_error(from_values, values)
    redis = Redis.from_url(settings.redis_url)
    try:
        samples = sample_all(redis, settings)
    finally:
        redis.close()
    for sample in samples:
        print(f"ok: {sample.framework}:{sample.queue} {sample.values(time.time())}")
    if len(samples) < len(settings.queues):
        sys.exit(1)


app = service_app(
    SETTINGS, __doc__ or "", _run, _check, "Sample every queue once and print it; nothing is sent."
)


def main(argv: Sequence[str] | None = None, prog: str = "python -m tally.sampler") -> int:
    """Entry point of ``python -m tally.sampler [run|check]`` (``tally sampler``)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings_cli.main(app, prog, argv)
    return 0
