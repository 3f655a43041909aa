"""Closing the load test's own trackers without waiting on a known client shutdown stall.

``Tracker.close()`` can block for ``close_timeout_s + 5`` seconds after everything was
delivered: the sender cancels its shipping task while that task sits in
``asyncio.wait_for(event.wait(), linger)`` right after ``stop()`` set the event, and Python
3.11's ``wait_for`` swallows a cancellation that races with the inner future completing, so
``await shipper`` never returns (see BENCHMARKS.md, "Findings"). The load test flushes first
(so nothing is lost), then closes in a daemon thread and moves on.
"""

from __future__ import annotations

import threading

from tally.ingest import Tracker


def close_in_background(tracker: Tracker, timeout: float = 5.0) -> threading.Thread:
    """Flush-then-close without blocking the caller; returns the closing thread."""
    closer = threading.Thread(
        target=tracker.close, args=(timeout,), name="tracker-close", daemon=True
    )
    closer.start()
    return closer
