"""The sampler service: every ``--interval`` seconds, sample each queue and track gauges.

Each queue is tracked under ``event::queue::<framework>::<queue>`` (and fanned out to
``event::queue``) with the gauges ``depth``, ``oldest_age_s``, ``workers.busy``,
``workers.idle``, ``workers.stalled`` and ``sampled_at`` (the heartbeat: when it was sampled).
A queue that cannot be read is logged and skipped for that tick; SIGTERM/SIGINT stop the loop,
flush and exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from redis import Redis

from tally.ingest import ClientSettings, Tracker
from tally.kafka.settings import BOOTSTRAP, DEFAULT_BOOTSTRAP, EVENTS_TOPIC, TOPIC
from tally.sampler.probes import PROBES
from tally.sampler.sample import QueueSample

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


def from_args(argv: Sequence[str] | None, env: Mapping[str, str]) -> SamplerSettings:
    """Settings from flags, with ``TALLY_SAMPLER_*`` / ``TALLY_KAFKA_BOOTSTRAP`` defaults."""
    parser = argparse.ArgumentParser(prog="python -m tally.sampler", description=__doc__)
    parser.add_argument(
        "--redis-url", default=env.get("TALLY_SAMPLER_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument(
        "--queue",
        action="append",
        help="framework:queue, repeatable (rq:default, celery:celery, dramatiq:default, "
        "arq:arq:queue); env TALLY_SAMPLER_QUEUES, comma-separated",
    )
    parser.add_argument(
        "--interval", type=float, default=float(env.get("TALLY_SAMPLER_INTERVAL_S", "10"))
    )
    parser.add_argument(
        "--stall-after", type=float, default=float(env.get("TALLY_SAMPLER_STALL_AFTER_S", "300"))
    )
    for row in (BOOTSTRAP, TOPIC):
        parser.add_argument(row.flag, default=env.get(row.env, row.default), help=row.described())
    args = parser.parse_args(argv)
    queues = args.queue or [
        q for q in env.get("TALLY_SAMPLER_QUEUES", "rq:default").split(",") if q
    ]
    try:
        return SamplerSettings(
            args.redis_url,
            tuple(parse_queue(q) for q in queues),
            args.interval,
            args.stall_after,
            args.bootstrap,
            args.topic,
        )
    except ValueError as exc:
        parser.error(str(exc))
        raise


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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m tally.sampler``."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = from_args(argv, os.environ)
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
    return 0
