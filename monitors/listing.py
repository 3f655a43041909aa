"""Monitor definitions and stored states as plain typed values (CLI and HTTP API)."""

from __future__ import annotations

import msgspec

from tally.monitors.spec import MonitorFile
from tally.read.settings import ReadSettings


class MonitorInfo(msgspec.Struct, frozen=True):
    """One monitor as listed: what it reads, its condition and timings."""

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
