"""Reads the sink's parts pressure every few seconds and hands it to the pacer.

A sink that can report it has ``parts_pressure()`` (an optional ability, found with
``getattr``). A read runs in the consume loop, so it is bounded by ``READ_TIMEOUT_S``: a
ClickHouse that hangs (paused, overloaded) must never stop consumption for longer. A user who
may not read the system tables gets one warning and the static insert ceiling; any other
failure (a timeout too) keeps the last reading and is retried at the next period.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from tally.clickhouse.parts_pressure import PartsPressure, PartsUnreadable
from tally.engine.pacer import FlushPacer

log = logging.getLogger("tally.aggregator")  # the name operators' log queries select

ReadPressure = Callable[[], Awaitable[PartsPressure]]
READ_TIMEOUT_S = 1.0  # the longest a parts-pressure read may hold up the consume loop


class PressureWatch:
    """Polls ``read`` every ``period_s`` (0: never) from the consume loop, between flushes."""

    def __init__(
        self,
        read: ReadPressure | None,
        pacer: FlushPacer,
        period_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.read = read if period_s > 0 else None
        self.pacer = pacer
        self.period_s = period_s
        self.clock = clock
        self.next_read = 0.0
        self.failing = False

    async def poll(self) -> None:
        """Read the pressure if a period has passed (run while no insert is in flight)."""
        if self.read is None or self.clock() < self.next_read:
            return
        self.next_read = self.clock() + self.period_s
        try:
            pressure = await asyncio.wait_for(self.read(), READ_TIMEOUT_S)
        except PartsUnreadable as exc:
            log.warning(
                "cannot read system.parts / system.merges (%s): flush pacing keeps the static"
                " insert ceiling, without parts-pressure feedback",
                exc,
            )
            self.read = None
            return
        except Exception as exc:
            if not self.failing:
                log.warning(
                    "reading parts pressure failed: %s; keeping the last reading", str(exc)[:300]
                )
            self.failing = True
            return
        self.failing = False
        self.pacer.observe(pressure)
