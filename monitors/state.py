"""The alert state machine of one monitor and segment, fed one verdict per judged bucket.

ok -> pending (breach, ``for`` not yet covered) -> firing -> resolved (clear for
``keep_firing_for``) -> ok; no-data and error when there is nothing to judge or the read
failed. A firing alert stays firing through no-data and errors: only clear buckets resolve
it. Times are bucket starts in unix seconds; a bucket ``t`` covers ``[t, end)``, so a breach
since ``s`` has held ``elapsed(s, end)`` when ``t`` is judged (absolute seconds for minutes
and hours, local wall-clock seconds for days and weeks: see :mod:`buckets`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

OK, PENDING, FIRING, RESOLVED, NODATA, ERROR = (
    "ok", "pending", "firing", "resolved", "nodata", "error",
)  # fmt: skip
ACTIVE = (FIRING,)


@dataclass(frozen=True, slots=True)
class AlertState:
    """Persisted per (monitor, segment). ``since`` is the first breaching bucket of the
    current pending/firing episode; ``clear_since`` the first clear bucket while firing;
    ``notified_at`` the bucket of the last firing notification (for ``notify_every``)."""

    state: str = OK
    since: int = 0
    clear_since: int = 0
    last_bucket: int = 0
    notified_at: int = 0
    value: float | None = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class Transition:
    """A change worth recording; ``notify`` is ``firing``, ``repeat``, ``resolved`` or ``""``."""

    bucket: int
    before: str
    after: str
    notify: str
    since: int
    value: float | None


@dataclass(frozen=True, slots=True)
class Timing:
    """A monitor's ``for``, ``keep_firing_for`` and ``notify_every`` in seconds."""

    for_s: int = 0
    keep_firing_for_s: int = 0
    notify_every_s: int = 0


def _absolute(since: int, until: int) -> int:
    return until - since


def step(
    s: AlertState, bucket: int, end: int, breach: bool | None, timing: Timing,
    value: float | None = None, error: str = "",
    elapsed: Callable[[int, int], int] = _absolute,
) -> tuple[AlertState, Transition | None]:  # fmt: skip
    """The state after judging bucket ``[bucket, end)`` (``breach`` None = no data; ``error`` =
    read failed); ``elapsed(a, b)`` measures timings."""
    before = s.state
    firing = s.state == FIRING
    if error or breach is None:
        if firing:
            return replace(s, last_bucket=bucket, message=error), None
        after = ERROR if error else NODATA
        new = AlertState(state=after, last_bucket=bucket, value=value, message=error)
        return new, _change(before, after, bucket, "", 0, value)
    if breach:
        if firing:
            new = replace(s, clear_since=0, last_bucket=bucket, value=value)
            every = timing.notify_every_s
            if every > 0 and elapsed(s.notified_at, bucket) >= every:
                new = replace(new, notified_at=bucket)
                return new, Transition(bucket, FIRING, FIRING, "repeat", s.since, value)
            return new, None
        since = s.since if s.state == PENDING else bucket
        if elapsed(since, end) >= timing.for_s:
            new = AlertState(FIRING, since, 0, bucket, bucket, value)
            return new, Transition(bucket, before, FIRING, "firing", since, value)
        new = AlertState(PENDING, since, 0, bucket, 0, value)
        return new, _change(before, PENDING, bucket, "", since, value)
    if firing:
        clear_since = s.clear_since or bucket
        if elapsed(clear_since, end) >= timing.keep_firing_for_s:
            new = AlertState(RESOLVED, 0, 0, bucket, 0, value)
            return new, Transition(bucket, FIRING, RESOLVED, "resolved", s.since, value)
        return replace(s, clear_since=clear_since, last_bucket=bucket, value=value), None
    new = AlertState(OK, 0, 0, bucket, 0, value)
    return new, _change(before, OK, bucket, "", 0, value)


def _change(
    before: str, after: str, bucket: int, notify: str, since: int, value: float | None
) -> Transition | None:
    if before == after or (before == RESOLVED and after == OK):
        return None
    return Transition(bucket, before, after, notify, since, value)
