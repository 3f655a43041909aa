"""The parent's side of the producers: spawn, start together, read counters, collect results."""

from __future__ import annotations

import multiprocessing as mp
import queue
import time
from dataclasses import dataclass

from tally.loadtest.producer import (
    REFUSED,
    SENT_EVENTS,
    SENT_RECORDS,
    SLOTS,
    TRACKED,
    WAITED_MS,
    ProducerResult,
    ProducerSpec,
    producer_main,
)


@dataclass(frozen=True)
class FleetCounters:
    """Sums over all producers at one instant."""

    tracked: int
    sent_events: int
    sent_records: int
    refused: int
    waited_ms: int


class Fleet:
    """N producer processes (spawned, so no threads or sockets are inherited)."""

    def __init__(self, specs: list[ProducerSpec]) -> None:
        self.specs = specs
        ctx = mp.get_context("spawn")
        self._counters = ctx.RawArray("q", SLOTS * len(specs))
        self._ready = ctx.Queue()
        self._results = ctx.Queue()
        self._go = ctx.Event()
        self._start_at = ctx.RawValue("d", 0.0)
        self.processes = [
            ctx.Process(
                target=producer_main,
                args=(s, self._counters, self._ready, self._go, self._start_at, self._results),
                name=f"loadtest-producer-{s.index}",
                daemon=True,
            )
            for s in specs
        ]

    @property
    def pids(self) -> list[int]:
        """Process ids of the producers (after ``spawn``)."""
        return [p.pid for p in self.processes if p.pid is not None]

    def spawn(self, timeout: float = 120) -> None:
        """Start the processes and wait until each has built its pool and connected."""
        for process in self.processes:
            process.start()
        deadline = time.monotonic() + timeout
        for _ in self.processes:
            remaining = deadline - time.monotonic()
            try:
                self._ready.get(timeout=max(0.1, remaining))
            except queue.Empty:
                self.terminate()
                raise TimeoutError("producers did not become ready") from None

    def go(self, delay_s: float = 0.2) -> float:
        """Release every producer at the same wall-clock instant; returns it (unix seconds)."""
        start_at = time.time() + delay_s
        self._start_at.value = start_at
        self._go.set()
        return start_at

    def counters(self) -> FleetCounters:
        """Current totals of the shared counters."""
        c = self._counters
        n = len(self.specs)

        def total(slot: int) -> int:
            return sum(c[i * SLOTS + slot] for i in range(n))

        return FleetCounters(
            total(TRACKED), total(SENT_EVENTS), total(SENT_RECORDS), total(REFUSED),
            total(WAITED_MS),
        )  # fmt: skip

    def collect(self, timeout: float) -> list[ProducerResult]:
        """Wait for every producer's result (they flush first), then join them."""
        results: list[ProducerResult] = []
        deadline = time.monotonic() + timeout
        while len(results) < len(self.processes):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.terminate()
                raise TimeoutError(f"only {len(results)} of {len(self.processes)} producers done")
            try:
                results.append(self._results.get(timeout=min(remaining, 1.0)))
            except queue.Empty:
                if all(not p.is_alive() for p in self.processes):
                    break
        for process in self.processes:
            process.join(10)
        return sorted(results, key=lambda r: r.index)

    def terminate(self) -> None:
        """Stop the producers we started (by their own handles)."""
        for process in self.processes:
            if process.is_alive():
                process.terminate()
        for process in self.processes:
            process.join(5)
