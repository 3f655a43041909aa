"""Monitor definitions and stored states as plain typed values (CLI and HTTP API)."""

from __future__ import annotations

import msgspec

from tally.monitors.loader import UNIT_SECONDS
from tally.monitors.spec import Monitor, MonitorFile, Zero
from tally.read.settings import ReadSettings


class MonitorInfo(msgspec.Struct, frozen=True):
    """One monitor as listed: what it reads, its condition and timings; ``window_s``,
    ``condition_s`` (how long the condition must see it, e.g. a zero condition's idle time) and
    ``alerts_after_s`` (from the first bad bucket to the firing notice) are effective
    durations in nominal bucket time."""

    name: str
    key: str
    what: str
    granularity: str
    window: int
    condition: str
    parameters: dict[str, object]
    for_s: int
    keep_firing_for_s: int
    notify_every_s: int
    labels: dict[str, str]
    notify: list[str]
    paused: bool
    source: str
    window_s: int = 0
    condition_s: int = 0
    alerts_after_s: int = 0


def bucket_s(m: Monitor) -> int:
    """Nominal length of one bucket (a day is 86,400 s here, whatever DST does)."""
    return UNIT_SECONDS[m.granularity.unit] * m.granularity.n


def condition_s(m: Monitor) -> int:
    """How much bucket time the condition needs to breach (a zero condition's idle time)."""
    buckets = m.condition.buckets if isinstance(m.condition, Zero) else 1
    return buckets * bucket_s(m)


def alerts_after_s(m: Monitor) -> int:
    """Bucket time from the first bad bucket to the firing notice: the condition breaches at
    the end of ``condition_s``, then ``for`` counts from that breaching bucket's start."""
    g = bucket_s(m)
    held = -(-max(m.for_s, g) // g) * g  # ``for`` is met at a bucket end
    return condition_s(m) - g + held


def duration(seconds: int) -> str:
    """``59m``, ``1h30m``, ``2d``: the largest units that add up exactly."""
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)


def timings(r: MonitorInfo) -> str:
    """The effective durations of one listed monitor, e.g. ``idle 30m, for 30m, alerts after
    59m``."""
    parts = [f"window {duration(r.window_s)}"]
    if r.condition == "zero":
        parts.append(f"idle {duration(r.condition_s)}")
    parts.append(f"for {duration(r.for_s)}")
    if r.keep_firing_for_s:
        parts.append(f"keep firing {duration(r.keep_firing_for_s)}")
    if r.notify_every_s:
        parts.append(f"repeat every {duration(r.notify_every_s)}")
    return ", ".join([*parts, f"alerts after {duration(r.alerts_after_s)}"])


def describe(loaded: MonitorFile) -> list[MonitorInfo]:
    """The loaded monitors, in file order."""
    out = []
    for m in loaded.monitors:
        c = m.condition
        params = {k: getattr(c, k) for k in getattr(c, "__dataclass_fields__", {})}
        out.append(
            MonitorInfo(
                m.name,
                m.key,
                m.path or m.expression,
                str(m.granularity),
                m.window,
                c.kind,
                params,
                m.for_s,
                m.keep_firing_for_s,
                m.notify_every_s,
                dict(m.labels),
                list(m.notify),
                m.paused,
                m.source,
                m.window * bucket_s(m),
                condition_s(m),
                alerts_after_s(m),
            )
        )
    return out


async def stored_states(
    settings: ReadSettings,
) -> tuple[dict[str, dict[str, dict[str, object]]], dict[str, int]]:
    """monitor -> segment -> state fields, and delivery counts by status."""
    from tally.monitors.store import Store

    store = Store(settings)
    await store.start()
    try:
        states: dict[str, dict[str, dict[str, object]]] = {}
        for monitor, seg, st in await store.all_states():
            states.setdefault(monitor, {})[seg.name] = {
                "state": st.state, "since": st.since, "last_bucket": st.last_bucket,
                "value": st.value, "message": st.message,
            }  # fmt: skip
        return states, await store.delivery_counts()
    finally:
        await store.close()
