"""Deliver the outbox concurrently, one worker per receiver (channel), each delivery within a
time budget: a receiver that hangs delays only its own notices, and evaluation never waits
for any of them.

A pass reads the pending rows and hands each channel's rows to a new worker unless that
channel's worker is still busy (its new rows wait for the next pass). Before each delivery a
worker re-checks the lease and the row's status, as before; outcomes are ``delivered`` or
``failed`` rows in the outbox. A channel that cannot deliver as configured (an unset
``url_env``) holds its rows (``held``) until fixed; a resolved notice goes only to a channel
that got its firing notice (else ``skipped``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from tally.monitors.lease import AlwaysHeld, Lease
from tally.monitors.metrics import MonitorMetrics
from tally.monitors.notify import Notifier
from tally.monitors.store import Outgoing, Store

log = logging.getLogger("tally.monitors.dispatch")
WAITING = ("pending", "held")  # outbox statuses still to deliver


@dataclass
class Outcome:
    """Deliveries a worker finished."""

    delivered: int = 0
    failed: int = 0


@dataclass
class Dispatcher:
    """Workers per channel over the outbox in ``store``."""

    store: Store
    notifier: Notifier
    lease: Lease | AlwaysHeld
    metrics: MonitorMetrics
    budget_s: float = 60.0  # one delivery, all its attempts and backoff
    _workers: dict[str, asyncio.Task[Outcome]] = field(default_factory=dict)
    _seen: set[str] = field(default_factory=set)  # channels with an outbox gauge

    async def dispatch(self) -> None:
        """Start a worker for each channel with pending rows and no busy worker; returns at
        once."""
        pending = await self.store.pending()
        by_channel: dict[str, list[Outgoing]] = {}
        for out in pending:
            by_channel.setdefault(out.channel, []).append(out)
        self._seen |= set(by_channel)
        for channel in self._seen:
            self.metrics.outbox_pending.labels(channel).set(len(by_channel.get(channel, ())))
        for channel, rows in by_channel.items():
            worker = self._workers.get(channel)
            if worker is not None and not worker.done():
                continue
            self._workers[channel] = asyncio.create_task(
                self._work(channel, rows), name=f"tally-deliver:{channel}"
            )

    async def drain(self) -> Outcome:
        """One pass, then wait for every worker (``tick`` in tests and benchmarks)."""
        await self.dispatch()
        total = Outcome()
        for channel, worker in list(self._workers.items()):
            outcome = await worker
            total.delivered += outcome.delivered
            total.failed += outcome.failed
            if self._workers.get(channel) is worker:
                del self._workers[channel]
        return total

    async def run(self, stop: asyncio.Event, wake: asyncio.Event, every_s: float) -> None:
        """A pass every ``every_s`` or when ``wake`` is set (new notices), until ``stop``."""
        while not stop.is_set():
            wake.clear()
            try:
                if await self.lease.held():  # a standby replica leaves the outbox alone
                    await self.dispatch()
            except Exception:
                log.exception("delivery pass failed; retrying")
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
            await asyncio.wait(waiters, timeout=every_s, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()

    async def close(self) -> None:
        """Stop every worker (their rows stay pending for the next holder of the lease)."""
        for worker in self._workers.values():
            worker.cancel()
        for worker in self._workers.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await worker
        self._workers.clear()

    def busy(self) -> list[str]:
        """Channels whose worker is delivering."""
        return sorted(c for c, w in self._workers.items() if not w.done())

    async def _work(self, channel: str, rows: list[Outgoing]) -> Outcome:
        outcome = Outcome()
        try:
            current = await self.store.status([(r.id, r.channel) for r in rows])
            for out in rows:
                if current.get((out.id, out.channel)) not in WAITING:
                    continue
                if not await self.lease.held():
                    break
                if await self._held(out) or await self._unseen(out):
                    continue
                started = time.monotonic()
                ok, attempts, error = await self.notifier.deliver(
                    out.notice, out.channel, self.budget_s
                )
                await self.store.mark(out, "delivered" if ok else "failed", attempts, error)
                self.metrics.delivery_seconds.labels(channel).observe(time.monotonic() - started)
                self.metrics.deliveries.labels(channel, "delivered" if ok else "failed").inc()
                if ok:
                    outcome.delivered += 1
                else:
                    outcome.failed += 1
        except Exception:  # a store error: the rows stay pending for the next pass
            log.exception("delivering to %s failed", channel)
        return outcome

    async def _held(self, out: Outgoing) -> bool:
        """True (and the row ``held``, with the reason) while its channel cannot deliver as
        configured; such a row is sent once the channel is fixed, never failed for it."""
        reason = self.notifier.problem(out.channel)
        if not reason:
            return False
        if out.status != "held" or out.error != reason:
            log.error("holding %s for %s: %s", out.id, out.channel, reason)
            await self.store.mark(out, "held", out.attempts, reason)
        return True

    async def _unseen(self, out: Outgoing) -> bool:
        """True when ``out`` is a resolved notice its channel must not get (yet): its firing
        notice is still waiting there (the resolved one waits too), or never reached it
        (the resolved one is ``skipped``: a RESOLVED for an alert the receiver never saw)."""
        if out.notice.kind != "resolved":
            return False
        firing = await self.store.firing_statuses(out)
        if "delivered" in firing:
            return False
        if firing & set(WAITING):
            return True
        reason = "not sent: this channel never got the firing notice"
        await self.store.mark(out, "skipped", out.attempts, reason)
        self.metrics.deliveries.labels(out.channel, "skipped").inc()
        return True
