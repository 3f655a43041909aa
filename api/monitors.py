"""``GET /api/v1/monitors``: the monitor definitions the API was given, their load errors and
the stored state of every segment; ``GET /api/v1/monitors/{name}``: one monitor's definition,
segments, firing windows and judged values around a bucket, for its page (read token)."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, QueryParameter

from tally.monitors import view
from tally.monitors.evaluate import Segment
from tally.monitors.listing import MonitorInfo, describe
from tally.monitors.loader import load_paths
from tally.monitors.spec import Monitor, MonitorFile
from tally.monitors.state import AlertState
from tally.monitors.store import Store
from tally.read import AsyncReader

Reader = NamedDependency[AsyncReader]


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


class MonitorDetail(msgspec.Struct, frozen=True):
    """One monitor for its page: the shown ``segment`` (and the key it reads), every stored
    segment, the condition's fixed lines, the segment's firing windows and judged values."""

    monitor: MonitorInfo
    segment: str
    key: str
    at: int
    segments: list[SegmentState]
    lines: list[view.Line]
    windows: list[view.Window]
    judged: view.Judged


def _missing_tables(exc: Exception) -> bool:
    return "UNKNOWN_TABLE" in str(exc) or "doesn't exist" in str(exc)


def _choose(m: Monitor, states: dict[Segment, AlertState], name: str | None) -> Segment:
    """The segment asked for; else a firing one, else the first; an unsegmented monitor's."""
    ordered = sorted(states, key=lambda s: (states[s].state != "firing", s.name))
    if name is not None:
        ordered = [s for s in ordered if s.name == name]
    if ordered:
        return ordered[0]
    if "*" not in m.key and bool(name) == m.segmented_by_path:  # not judged yet
        return Segment(name or "", m.key)
    raise NotFoundException(f"monitor {m.name!r} has no segment {name or ''!r} yet")


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

    @get("/monitors/{name:str}", summary="One monitor: segments, firing windows, judged values")
    async def monitor(
        self,
        state: State,
        reader: Reader,
        name: FromPath[str],
        segment: Annotated[str | None, QueryParameter(description="Segment name")] = None,
        at: Annotated[int | None, QueryParameter(description="A bucket (unix seconds)")] = None,
    ) -> MonitorDetail:
        settings = state.settings
        loaded = await asyncio.to_thread(load_paths, list(settings.monitor_paths))
        m = next((x for x in loaded.monitors if x.name == name), None)
        if m is None:
            raise NotFoundException(f"no monitor {name!r}")
        store = Store(settings.read)
        states: dict[Segment, AlertState] = {}
        try:
            await store.start(create=False)
            try:
                states = await store.states(name)
            except Exception as exc:  # the service never ran: no tables yet
                if not _missing_tables(exc):
                    raise
            seg = _choose(m, states, segment)
            history = await store.transitions(name, seg.name) if states else []
        finally:
            await store.close()
        st = states.get(seg, AlertState())
        when = at if at is not None else st.last_bucket or int(time.time())
        judged = await view.judged(reader, m, seg, when)
        rows = [
            SegmentState(name, s.name, s.key, x.state, x.since, x.last_bucket, x.value, x.message)
            for s, x in sorted(states.items(), key=lambda item: item[0].name)
        ]
        (info,) = describe(MonitorFile(monitors=(m,)))
        return MonitorDetail(
            info, seg.name, seg.key, when, rows, view.lines(m), view.windows(history), judged
        )
