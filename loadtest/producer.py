"""One load-generating process: its own ``Tracker``, paced by the shared ``RateProfile``.

The parent spawns N of these (``fleet.py``). Each replays its template pool with ``track``,
stamping events with the current second, keeps a ``SendLog`` and publishes its counters in a
shared array. When the run ends it flushes, and sends back its partial expected totals.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

from tally.ingest import ClientSettings, Tracker
from tally.loadtest.pacing import RateProfile, Schedule
from tally.loadtest.scenarios import WARMUP_KEY, Scenario
from tally.loadtest.sendlog import SendLog
from tally.loadtest.trackers import close_in_background
from tally.schemas.granularity import Calendar

# Slots per producer in the shared counters array.
TRACKED, SENT_EVENTS, SENT_RECORDS, REFUSED, WAITED_MS = range(5)
SLOTS = 5


@dataclass(frozen=True)
class ProducerSpec:
    """What producer ``index`` of ``producers`` does."""

    index: int
    producers: int
    bootstrap: str
    topic: str
    scenario: Scenario
    profile: RateProfile
    time_zone: str = "UTC"
    granularities: tuple[str, ...] = ("1m", "1h", "1d")
    chunk: int = 500
    flush_timeout_s: float = 300.0


@dataclass
class ProducerResult:
    """What a producer reports when done (picklable)."""

    index: int
    pid: int
    tracked: int
    refused: int
    sent_events: int
    sent_records: int
    dropped: int
    cpu_s: float
    send_s: float
    flush_s: float
    flushed: bool
    totals: Counter
    error: str | None = None


def producer_main(spec: ProducerSpec, counters, ready, go, start_at, results) -> None:
    """Process entry point (spawned): warm up, wait for ``go``, produce, report."""
    try:
        results.put(_produce(spec, counters, ready, go, start_at))
    except BaseException as exc:  # report, never hang the parent
        ready.put(spec.index)
        results.put(_failed(spec, repr(exc)))
        raise


def _failed(spec: ProducerSpec, error: str) -> ProducerResult:
    import os

    return ProducerResult(spec.index, os.getpid(), 0, 0, 0, 0, 0, 0, 0, 0, False, Counter(), error)


def _produce(spec: ProducerSpec, counters, ready, go, start_at) -> ProducerResult:
    import os

    templates = spec.scenario.templates(spec.index)
    settings = ClientSettings(
        bootstrap_servers=spec.bootstrap, topic=spec.topic, source=f"loadtest-{spec.index}"
    )
    tracker = Tracker(settings)
    # Connects the sender before the clock starts; the warm-up key is excluded from exactness.
    tracker.track(WARMUP_KEY, {"count": 1}, route=f"warmup-{spec.index}")
    tracker.flush(60)
    ready.put(spec.index)
    go.wait()
    log = SendLog(len(templates))
    cpu0 = time.process_time()
    sent_s = _loop(spec, tracker, templates, log, counters, start_at.value)
    flush_started = time.monotonic()
    flushed = tracker.flush(spec.flush_timeout_s)
    flush_s = time.monotonic() - flush_started
    stats = tracker.stats()
    close_in_background(tracker)
    cpu = time.process_time() - cpu0
    base = spec.index * SLOTS
    counters[base + SENT_EVENTS] = stats.sent_events - 1  # minus the warm-up event
    counters[base + SENT_RECORDS] = stats.sent_records
    expected = log.expected(templates, Calendar(spec.time_zone), spec.granularities)
    return ProducerResult(
        index=spec.index,
        pid=os.getpid(),
        tracked=log.events,
        refused=len(log.refused),
        sent_events=stats.sent_events - 1,
        sent_records=stats.sent_records,
        dropped=stats.dropped_overflow + stats.dropped_spool_full,
        cpu_s=cpu,
        send_s=sent_s,
        flush_s=flush_s,
        flushed=flushed,
        totals=expected.totals,
    )


def _loop(spec, tracker: Tracker, templates, log: SendLog, counters, start_at: float) -> float:
    """Produce on schedule until the profile ends; returns the seconds spent producing."""
    schedule = Schedule(spec.profile)
    share = 1.0 / spec.producers
    mine = quota(schedule.total, spec.producers, spec.index)
    duration = spec.profile.duration_s
    high_water = tracker.settings.buffer_events // 2
    base = spec.index * SLOTS
    track = tracker.track
    clock = time.monotonic
    origin = clock() + (start_at - time.time())
    time.sleep(max(0.0, origin - clock()))
    index = sent = 0
    next_publish = 0.0
    elapsed = 0.0
    while True:
        elapsed = clock() - origin
        if elapsed >= duration:
            break
        stats = tracker.stats()
        if elapsed >= next_publish:
            counters[base + SENT_EVENTS] = max(0, stats.sent_events - 1)
            counters[base + SENT_RECORDS] = stats.sent_records
            next_publish = elapsed + 0.5
        if stats.buffered > high_water:  # the sender is behind: back off rather than drop
            counters[base + WAITED_MS] += 5
            time.sleep(0.005)
            continue
        n = min(min(int(schedule.due(elapsed) * share), mine) - sent, spec.chunk)
        if n <= 0:
            time.sleep(0.001)
            continue
        index, refused = _send_chunk(track, templates, log, index, n)
        counters[base + REFUSED] += refused
        sent += n
        counters[base + TRACKED] = sent
    _top_up(spec, schedule, tracker, templates, log, sent, index)
    counters[base + TRACKED] = log.events + len(log.refused)
    return elapsed


def _send_chunk(track, templates, log, index: int, n: int) -> tuple[int, int]:
    """Track ``n`` templates from ``index`` on (wrapping), stamped with this second; log what
    was sent and refused. Returns the next index and how many the client refused."""
    at = int(time.time())
    minute = at - at % 60
    start, pool, refused = index, len(templates), 0
    for _ in range(n):
        event = templates[index]
        if not track(event.keys, event.values, at, event.route):
            log.refuse(minute, index)
            refused += 1
        index += 1
        if index == pool:
            index = 0
    log.sent(minute, start, n)
    return index, refused


def quota(total: float, producers: int, index: int) -> int:
    """This producer's share of ``total`` events; the shares add up to ``int(total)``."""
    whole = int(total)
    return whole // producers + (1 if index < whole % producers else 0)


def _top_up(spec, schedule: Schedule, tracker: Tracker, templates, log, sent: int, index: int):
    """Send the rounding residue the last iteration left; a producer that fell behind the
    schedule does not catch up after the end (the report shows it did not keep up)."""
    missing = quota(schedule.total, spec.producers, spec.index) - sent
    if not 0 < missing <= spec.chunk:
        return
    _send_chunk(tracker.track, templates, log, index, missing)
