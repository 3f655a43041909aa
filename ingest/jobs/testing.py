"""``RecordingTracker``: a ``Trackable`` that keeps every call, for tests of instrumented jobs."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from tally.ingest.flatten import Kinds, flatten_all
from tally.ingest.kinds import Dist, Gauge
from tally.ingest.track_args import Keys, Values, When
from tally.schemas.limits import Limits


@dataclass(frozen=True)
class TrackCall:
    """One recorded ``track`` call, with its values flattened to dotted paths."""

    keys: tuple[str, ...]
    values: Mapping[str, object]
    at: When
    route: str | None

    @property
    def flat(self) -> dict[str, int | float]:
        """``{"total.count": 1, ...}`` (validated like the real client does).

        A distribution at ``P`` shows as ``P.count``, ``P.sum`` and ``P.square`` (what the
        rollups hold besides its sketch, see ``dists``); a gauge as its value.
        """
        paths, numbers, kinds = flatten_all(self.values, Limits())
        out = dict(zip(paths, numbers, strict=True))
        if kinds is not None:
            for path, d in kinds[0]:
                out[f"{path}.count"] = d.count
                out[f"{path}.sum"] = int(d.total) if d.total.is_integer() else d.total
                out[f"{path}.square"] = int(d.square) if d.square.is_integer() else d.square
            for path, value, _ in kinds[1]:
                out[path] = value
        return out

    @property
    def dists(self) -> dict[str, Dist]:
        """The distributions of the call by path."""
        _, _, kinds = flatten_all(self.values, Limits())
        return dict(kinds[0]) if kinds is not None else {}


@dataclass
class RecordingTracker:
    """Records ``track`` calls (thread-safe); ``wait`` blocks until enough have arrived."""

    calls: list[TrackCall] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def track(self, keys: Keys, values: Values, at: When = None, route: str | None = None) -> bool:
        """Record the call; always accepted."""
        call = TrackCall((keys,) if isinstance(keys, str) else tuple(keys), values, at, route)
        with self._cond:
            self.calls.append(call)
            self._cond.notify_all()
        return True

    def track_flat(
        self,
        keys: Keys,
        paths: tuple[str, ...],
        numbers: list[int | float],
        at: When = None,
        route: str | None = None,
        kinds: Kinds | None = None,
    ) -> bool:
        """Record a pre-flattened call as the nested values it stands for."""
        values = unflatten(paths, numbers)
        if kinds is not None:
            leaves: list[tuple[str, object]] = list(kinds[0])
            leaves += [(p, Gauge(v, at_ms)) for p, v, at_ms in kinds[1]]
            for path, leaf in leaves:
                node = values
                *parents, name = path.split(".")
                for part in parents:
                    node = node.setdefault(part, {})
                node[name] = leaf
        return self.track(keys, values, at, route)

    def flush(self, timeout: float = 0.0) -> bool:
        """Nothing to flush."""
        return True

    def wait(self, count: int, timeout: float = 30.0) -> list[TrackCall]:
        """Block until ``count`` calls were recorded; AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.calls) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.calls)} of {count} track calls recorded")
                self._cond.wait(left)
            return list(self.calls)

    def for_job(self, job: str) -> list[TrackCall]:
        """Calls whose ``jobs`` breakdown names ``job``."""
        with self._cond:
            return [c for c in self.calls if job in c.values.get("jobs", {})]  # type: ignore[operator]


def unflatten(paths: tuple[str, ...], numbers: list[int | float]) -> dict:
    """The nested dict whose flattening is ``(paths, numbers)``."""
    root: dict = {}
    for path, number in zip(paths, numbers, strict=True):
        node = root
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = number
    return root
