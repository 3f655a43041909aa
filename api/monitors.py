"""``GET /api/v1/monitors``: the monitor definitions the API was given, their load errors and
the stored state of every segment (read token)."""

from __future__ import annotations

import asyncio

import msgspec
from litestar import Controller, get
from litestar.datastructures import State

from tally.monitors.listing import MonitorInfo, describe
from tally.monitors.loader import load_paths
from tally.monitors.store import Store


class SegmentState(msgspec.Struct, frozen=True):
    """One alert instance's stored state."""

    monitor: str
    segment: str
    key: str
    state: str
    since: int
    last_bucket: int
    value: float | None
    message: str


class MonitorList(msgspec.Struct, frozen=True):
    """Definitions, file errors (``file:line: reason``), states and delivery counts."""

    monitors: list[MonitorInfo]
    errors: list[str]
    states: list[SegmentState]
    deliveries: dict[str, int]


class MonitorController(Controller):
    """Monitors as code, listed."""

    path = "/api/v1"

    @get("/monitors", summary="Monitor definitions, their errors and stored states")
    async def monitors(self, state: State) -> MonitorList:
        settings = state.settings
        loaded = await asyncio.to_thread(load_paths, list(settings.monitor_paths))
        states: list[SegmentState] = []
        counts: dict[str, int] = {}
        store = Store(settings.read)
        try:
            await store.start(create=False)
            for name, seg, st in await store.all_states():
                states.append(
                    SegmentState(
                        name,
                        seg.name,
                        seg.key,
                        st.state,
                        st.since,
                        st.last_bucket,
                        st.value,
                        st.message,
                    )
                )
            counts = await store.delivery_counts()
        except Exception as exc:  # no monitor tables yet (the service never ran)
            if "UNKNOWN_TABLE" not in str(exc) and "doesn't exist" not in str(exc):
                raise
        finally:
            await store.close()
        return MonitorList(describe(loaded), list(loaded.errors), states, counts)
