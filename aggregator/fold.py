"""Pre-aggregation of one partition's records in memory, with per-event validation.

Events are folded at minute resolution by (keyset, minute, shape): the values of all events
with the same keys, minute and paths are summed element-wise, which is a few list operations
per event. The fan-out to every key, stored granularity (buckets in the configured zone) and
path happens in ClickHouse (``schemas/ddl.py``: ``rollups_input`` -> ``rollups_expand``), so
the aggregator's cost does not grow with fan-out or the number of granularities.
Invalid events are returned as ``Rejected`` and never stop the rest of their record.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tally.schemas.limits import Limits
from tally.schemas.wire import SCHEMA_VERSION, BatchDecoder, EventV1, WireError

log = logging.getLogger("tally.aggregator.fold")
EXPIRED_LOG_INTERVAL_S = 60.0


@dataclass(frozen=True, slots=True)
class Rejected:
    """One record (``index`` -1) or one event of a record that is dead-lettered."""

    offset: int
    index: int
    reason: str
    detail: str
    event: Any = None


@dataclass(slots=True)
class FoldRows:
    """Column-oriented rows for ``rollups_input``: one per (keys, minute, paths)."""

    keys: list[tuple[str, ...]]
    minute: list[int]
    paths: list[tuple[str, ...]]
    values: list[list[float]]

    def __len__(self) -> int:
        return len(self.minute)

    def columns(self) -> list[list]:
        """Columns in table order (keys, minute, paths, values)."""
        return [self.keys, self.minute, self.paths, self.values]


COLUMNS = ("keys", "minute", "paths", "values")

# Memory accounting (CPython, 64-bit): an entry is its dict slot, its 3-tuple key and a list of
# ``n`` values, each a pointer plus a number object (a float or an int, up to 24 bytes).
ENTRY_BYTES = 300
VALUE_BYTES = 8 + 24
# An interned keyset/shape: dict slot + tuple, plus its strings (measured with getsizeof).
TABLE_BYTES = 200
POINTER_BYTES = 8


class PartitionFold:
    """The in-memory sums of one partition since its last flush."""

    def __init__(self, limits: Limits, decoder: BatchDecoder) -> None:
        self.limits = limits
        self.decoder = decoder
        self.acc: dict[tuple[int, int, int], list] = {}
        self.keysets: dict[tuple[str, ...], int] = {}
        self.shapes: dict[tuple[str, ...], int] = {}
        self.keyset_list: list[tuple[str, ...]] = []
        self.shape_list: list[tuple[str, ...]] = []
        self.events = 0
        # Events older than a granularity's TTL on arrival: counted per granularity, passed to
        # ``on_expired`` (the worker wires it to ``tally_expired_on_arrival``) and logged.
        self.expired: Counter[str] = Counter()
        self.on_expired: Callable[[str, int], None] | None = None
        self._expired_logged = 0.0
        self.nbytes = 0  # estimated bytes held: entries, values, interned tables and strings

    def __len__(self) -> int:
        return len(self.acc)

    def clear(self) -> None:
        """Forget everything folded (after a flush)."""
        self.acc = {}
        self.keysets = {}
        self.shapes = {}
        self.keyset_list = []
        self.shape_list = []
        self.events = 0
        self.nbytes = 0

    def _intern(self, names: tuple[str, ...], is_keys: bool) -> int:
        """The fold-wide id of a keyset/shape used by a folded event (interned on first use)."""
        intern = self.keysets if is_keys else self.shapes
        found = intern.get(names)
        if found is None:
            found = intern[names] = len(intern)
            (self.keyset_list if is_keys else self.shape_list).append(names)
            self.nbytes += TABLE_BYTES + sum(POINTER_BYTES + sys.getsizeof(n) for n in names)
        return found

    def add_record(self, payload: bytes, offset: int, timestamp_ms: int) -> list[Rejected]:
        """Fold one Kafka record; return what was rejected (the rest is folded)."""
        try:
            batch = self.decoder.decode(payload)
        except WireError as exc:
            if exc.reason != "malformed_fields":
                return [Rejected(offset, -1, exc.reason, exc.detail[:500])]
            return self._salvage(payload, offset, timestamp_ms)
        return self._fold(
            batch.strings, batch.keysets, batch.shapes, batch.events, offset, timestamp_ms, False
        )

    def _salvage(self, payload: bytes, offset: int, timestamp_ms: int) -> list[Rejected]:
        """Slow path for a batch with some ill-typed field: keep every valid event."""
        try:
            raw = self.decoder.decode_any(payload)
        except WireError as exc:
            return [Rejected(offset, -1, exc.reason, exc.detail[:500])]
        if not (isinstance(raw, list) and len(raw) >= 6 and raw[0] == SCHEMA_VERSION):
            return [Rejected(offset, -1, "malformed_batch", "not a version-1 batch")]
        _, _, strings, keysets, shapes, events = raw[:6]
        tables_ok = (
            isinstance(strings, list)
            and all(isinstance(s, str) for s in strings)
            and isinstance(keysets, list)
            and isinstance(shapes, list)
            and isinstance(events, list)
        )
        if not tables_ok:
            return [Rejected(offset, -1, "malformed_batch", "bad string/keyset/shape tables")]
        converted: list[EventV1 | None] = [
            EventV1(*e) if isinstance(e, list) and len(e) == 4 else None for e in events
        ]
        return self._fold(strings, keysets, shapes, converted, offset, timestamp_ms, True)

    def _check_tables(
        self, strings: list[str], tables: list[Any], is_keys: bool
    ) -> tuple[list[int | str], list[tuple[str, ...]]]:
        """Validate each keyset/shape of a batch: (batch index or rejection reason, names).

        Nothing is interned here: a table enters the fold only when an event folds with it
        (``_intern``), so tables that no event uses are dropped with their record.
        """
        limits = self.limits
        out: list[int | str] = []
        names_out: list[tuple[str, ...]] = []
        for index, table in enumerate(tables):
            names_out.append(())
            try:
                names = tuple(strings[i] for i in table if type(i) is int and i >= 0)
                if len(names) != len(table) or not names:
                    raise IndexError
            except (IndexError, TypeError):
                out.append("bad_reference")
                continue
            if is_keys:
                problem = next(filter(None, map(limits.key_problem, names)), None)
                if len(names) > limits.max_keys:
                    problem = "too_many_keys"
            else:
                problem = next(filter(None, map(limits.path_problem, names)), None)
                if len(names) > limits.max_values:
                    problem = "too_many_values"
            if problem:
                out.append(problem)
                continue
            names_out[index] = names
            out.append(index)
        return out, names_out

    def _fold(
        self,
        strings: list[str],
        keysets: list[Any],
        shapes: list[Any],
        events: list[Any],
        offset: int,
        timestamp_ms: int,
        careful: bool,
    ) -> list[Rejected]:
        limits = self.limits
        ks_ids, ks_names = self._check_tables(strings, keysets, True)
        sh_ids, shape_list = self._check_tables(strings, shapes, False)
        n_ks, n_sh = len(ks_ids), len(sh_ids)
        ks_fold = [-1] * n_ks  # batch keyset index -> fold id, interned on first use
        sh_fold = [-1] * n_sh
        reference = timestamp_ms // 1000
        lo, hi = limits.time_bounds(reference)
        cap = limits.max_abs_value
        shortest = limits.shortest_ttl()
        oldest_kept = reference - shortest[1] if shortest else None
        stale: list[int] = []
        acc = self.acc
        added = 0
        rejected: list[Rejected] = []
        folded = 0
        for index, ev in enumerate(events):
            if ev is None:
                rejected.append(Rejected(offset, index, "malformed_event", "not [at, k, s, v]"))
                continue
            at, ks, sh, values = ev.at, ev.keyset, ev.shape, ev.values
            reason = None
            if type(at) is not int or not lo <= at <= hi:
                reason = limits.time_problem(at, reference)
            elif (
                type(ks) is not int
                or not 0 <= ks < n_ks
                or type(sh) is not int
                or not 0 <= sh < n_sh
            ):
                reason = "bad_reference"
            else:
                ks, sh = ks_ids[ks], sh_ids[sh]
                if type(ks) is str:
                    reason = ks
                elif type(sh) is str:
                    reason = sh
                elif type(values) is not list or len(values) != len(shape_list[sh]):
                    reason = "values_shape_mismatch"
                elif careful or not _fast_ok(values, cap):
                    reason = next(filter(None, map(limits.value_problem, values)), None)
            if reason is not None:
                rejected.append(Rejected(offset, index, reason, "", _plain(ev)))
                continue
            fks, fsh = ks_fold[ks], sh_fold[sh]
            if fks < 0:
                fks = ks_fold[ks] = self._intern(ks_names[ks], True)
            if fsh < 0:
                fsh = sh_fold[sh] = self._intern(shape_list[sh], False)
            slot = (fks, at - at % 60, fsh)
            sums = acc.get(slot)
            if sums is None:
                acc[slot] = list(values)
                added += ENTRY_BYTES + VALUE_BYTES * len(values)
            else:
                acc[slot] = [a + b for a, b in zip(sums, values, strict=True)]
            folded += 1
            if oldest_kept is not None and at < oldest_kept:
                stale.append(at)
        self.events += folded
        if stale:
            self._count_expired(stale, reference)
        self.nbytes += added
        return rejected

    def _count_expired(self, stale: list[int], reference: int) -> None:
        """Count events folded into granularities whose TTL they have already passed."""
        counts: Counter[str] = Counter()
        for at in stale:
            counts.update(self.limits.expired_in(at, reference))
        self.expired.update(counts)
        if self.on_expired is not None:
            for g, n in counts.items():
                self.on_expired(g, n)
        now = time.monotonic()
        if now - self._expired_logged >= EXPIRED_LOG_INTERVAL_S:
            self._expired_logged = now
            log.warning(
                "events older than a granularity's TTL on arrival: ClickHouse drops them there",
                extra={"expired_on_arrival": dict(self.expired)},
            )

    def rows(self) -> FoldRows:
        """The sums as rows for ``rollups_input``, in fold order (deterministic per range).

        ClickHouse's ``rollups_expand`` view fans them out to every key, stored granularity and
        path in C++, which is where per-row work belongs.
        """
        keysets = self.keyset_list
        shapes = self.shape_list
        rows = FoldRows([], [], [], [])
        for (ks, minute, sh), sums in self.acc.items():
            rows.keys.append(keysets[ks])
            rows.minute.append(minute)
            rows.paths.append(shapes[sh])
            rows.values.append(sums)  # ints and floats: the encoder writes Float64 as is
        return rows


def _fast_ok(values: list, cap: float) -> bool:
    """True when every value is a finite number within ``cap`` (a cheap sufficient check)."""
    try:
        return sum(map(abs, values)) <= cap
    except TypeError:
        return False


def _plain(event: Any) -> Any:
    if isinstance(event, EventV1):
        return [event.at, event.keyset, event.shape, event.values]
    return event
