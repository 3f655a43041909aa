"""Run the state machine of every segment of a monitor over judged buckets, and turn
notifying transitions into :class:`Notice` values (rendered, with a dashboard link)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

from tally.monitors.buckets import Buckets
from tally.monitors.evaluate import Frames, Segment, verdict_at
from tally.monitors.spec import Monitor
from tally.monitors.state import AlertState, Timing, Transition, step
from tally.schemas.granularity import Calendar

UTC_CALENDAR = Calendar()
_TEMPLATE = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")


def buckets_of(monitor: Monitor, calendar: Calendar) -> Buckets:
    """The monitor's buckets in the rollups' calendar."""
    return Buckets(calendar, monitor.granularity)


def timing(monitor: Monitor) -> Timing:
    return Timing(monitor.for_s, monitor.keep_firing_for_s, monitor.notify_every_s)


def iso(ts: int) -> str:
    """RFC 3339 UTC with a Z."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Notice:
    """One notification to deliver, identified by ``id`` (the same on every replica and after
    every restart: monitor, segment, episode start, kind and bucket)."""

    id: str
    monitor: str
    segment: str
    key: str
    kind: str  # firing | repeat | resolved
    bucket: int
    since: int
    granularity: str
    value: float | None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    url: str = ""
    fingerprint: str = ""

    @property
    def status(self) -> str:
        return "resolved" if self.kind == "resolved" else "firing"


def fingerprint(monitor: str, segment: str) -> str:
    """Stable id of an alert instance (Alertmanager's ``fingerprint``)."""
    return hashlib.sha256(f"{monitor}\x00{segment}".encode()).hexdigest()[:16]


def monitor_url(base_url: str, monitor: str, segment: str, bucket: int) -> str:
    """The monitor's page (``<base>/ui/monitors/<name>?segment=&at=``, ``at`` in unix seconds):
    the value it judged around ``bucket`` with its lines, firing windows and executions."""
    if not base_url:
        return ""
    query = urlencode({"segment": segment, "at": bucket})
    return f"{base_url.rstrip('/')}/ui/monitors/{quote(monitor, safe='')}?{query}"


def _format(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.6g}"


def render(text: str, context: Mapping[str, str]) -> str:
    """``{{ name }}`` substitution (names validated at load time)."""
    return _TEMPLATE.sub(lambda m: context.get(m.group(1), m.group(0)), text)


def notice(monitor: Monitor, segment: Segment, t: Transition, base_url: str) -> Notice:
    """The notice of a notifying transition; its link opens the monitor's page at the judged
    bucket."""
    since = t.since or t.bucket
    url = monitor_url(base_url, monitor.name, segment.name, t.bucket)
    context = {
        "monitor": monitor.name, "segment": segment.name or "-", "key": segment.key,
        "value": _format(t.value), "bucket": iso(t.bucket), "since": iso(since),
        "state": t.after, "url": url, "granularity": str(monitor.granularity),
    }  # fmt: skip
    annotations = {k: render(v, context) for k, v in monitor.annotations.items()}
    annotations.setdefault(
        "summary", f"{monitor.name} {segment.name or ''} {t.after}: value {context['value']}"
        f" in the bucket {context['bucket']}".replace("  ", " "),
    )  # fmt: skip
    labels = {"alertname": monitor.name, **monitor.labels}
    if segment.name:
        labels["segment"] = segment.name
    raw = f"{monitor.name}\x00{segment.name}\x00{since}\x00{t.notify}\x00{t.bucket}"
    return Notice(
        id=hashlib.sha256(raw.encode()).hexdigest()[:32], monitor=monitor.name,
        segment=segment.name, key=segment.key, kind=t.notify, bucket=t.bucket, since=since,
        granularity=str(monitor.granularity), value=t.value, labels=labels,
        annotations=annotations, url=url, fingerprint=fingerprint(monitor.name, segment.name),
    )  # fmt: skip


@dataclass
class Step:
    """What judging produced: the new states, every transition (for history) and notices."""

    states: dict[Segment, AlertState]
    transitions: list[tuple[Segment, Transition]]
    notices: list[Notice]


def advance(
    monitor: Monitor,
    frames: Frames,
    states: Mapping[Segment, AlertState],
    first: int,
    base_url: str = "",
    error: str = "",
    calendar: Calendar = UTC_CALENDAR,
) -> Step:
    """Judge every bucket from index ``first`` for each segment, after its ``last_bucket``;
    bucket ends and timings follow ``calendar`` (the rollups' zone).

    Buckets whose window is not complete in ``frames`` are never judged.
    """
    first = max(first, monitor.window - 1)
    clock = buckets_of(monitor, calendar)
    t = timing(monitor)
    new_states = dict(states)
    transitions: list[tuple[Segment, Transition]] = []
    notices: list[Notice] = []
    segments = set(frames.frames) | set(states)
    for seg in sorted(segments, key=lambda s: (s.name, s.key)):
        state = states.get(seg, AlertState())
        frame = frames.frames.get(seg)
        for i in range(first, len(frames.buckets)):
            bucket = frames.buckets[i]
            if bucket <= state.last_bucket:
                continue
            end = clock.next(bucket)
            if frame is None or error:
                state, tr = step(state, bucket, end, None, t, None, error or "", clock.elapsed)
            else:
                v = verdict_at(monitor, frame, i)
                state, tr = step(state, bucket, end, v.breach, t, v.value, "", clock.elapsed)
            if tr is not None:
                transitions.append((seg, tr))
                if tr.notify:
                    notices.append(notice(monitor, seg, tr, base_url))
        new_states[seg] = state
    return Step(new_states, transitions, notices)
