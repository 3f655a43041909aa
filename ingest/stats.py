"""Counters the client keeps about itself."""

from __future__ import annotations

import threading
from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class TrackerStats:
    """A snapshot of the client's counters (since the Tracker was created, or since the fork
    in a forked child).

    ``too_large``: events rejected by ``track`` because alone they exceed ``record_bytes``.
    ``dropped_closed``: events passed to ``track`` after ``close``.
    ``sent_events``: events the broker acknowledged, including events replayed from the spool
    (which an earlier process may have written).
    ``send_failures``: retriable send failures (the broker is unreachable or slow).
    ``send_rejected``: records the broker refused with a non-retriable error (too large,
    not authorized, ...); ``split_records`` of them were too large and were split and resent;
    ``dropped_rejected`` events could never be accepted (one event over the broker's limit).
    ``spool_quarantined``: corrupt spool files moved to ``<spool_dir>/.quarantine``.
    ``dropped_unencodable``: events the sender could not encode or route (e.g. text that is
    not valid UTF-8 and got past ``track``'s checks); each is dropped alone, logged, and the
    rest of its record is delivered.
    ``fold_events_in`` / ``fold_records_out``: events that went into client-side folding and
    the (wire) events that came out of it (``ClientSettings.fold``); their ratio is the
    fold's gain. ``sent_events`` counts tracked events, folded or not (events replayed from
    the spool count as the folded events the spooled record holds).
    """

    accepted: int = 0
    invalid: int = 0
    too_large: int = 0
    dropped_overflow: int = 0
    dropped_closed: int = 0
    internal_errors: int = 0
    sent_events: int = 0
    sent_records: int = 0
    send_failures: int = 0
    send_rejected: int = 0
    split_records: int = 0
    dropped_rejected: int = 0
    spooled_records: int = 0
    unspooled_records: int = 0
    dropped_spool_full: int = 0
    spool_quarantined: int = 0
    dropped_unencodable: int = 0
    buffered: int = 0
    pending_bytes: int = 0
    drained: int = 0
    fold_events_in: int = 0
    fold_records_out: int = 0


class Counters:
    """Thread-safe mutable counters behind ``TrackerStats``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = {f.name: 0 for f in fields(TrackerStats)}

    def after_fork(self) -> None:
        """In a forked child: a fresh lock (the parent's may have been held at fork time),
        and counters from zero (the parent's work is the parent's to report)."""
        self._lock = threading.Lock()
        self._values = dict.fromkeys(self._values, 0)

    def add(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name``."""
        with self._lock:
            self._values[name] += n

    def get(self, name: str) -> int:
        """Current value of counter ``name``."""
        return self._values[name]

    def snapshot(self, **gauges: int) -> TrackerStats:
        """Counters plus the given gauges as an immutable snapshot."""
        with self._lock:
            values = dict(self._values)
        values.update(gauges)
        return TrackerStats(**values)
