"""Client-side folding: what the aggregator would sum anyway is summed before encoding.

The aggregator folds events by (keys, UTC minute of ``at``, paths) (``aggregator/fold.py``),
and ClickHouse derives every stored granularity's bucket from that minute, so two events of
one minute can never fall into different buckets of any granularity. ``RecordFolder`` merges
the records of one packing round (the sender's linger window, one partition) on the same
key plus the route and the distribution and gauge paths:

- summed values are added element-wise (the event count behind each record is kept as its
  weight, so ``sent_events`` still counts tracked events);
- distributions merge their sketches: counts, sums and squares add, min and max combine,
  bucket counts add (the same sketch the aggregator would build);
- gauges keep the last reading by event time (a tie goes to the larger value, the
  aggregator's rule) and, so that the bucket's min and max stay exact, the readings holding
  the minimum and the maximum travel too, in gauge-only events of the same keys and minute;
- the folded record keeps the latest ``at`` of its events (a time inside their minute).

A group whose sums would leave ``max_abs_value`` is not folded (its events go as they came),
so the aggregator never rejects a folded event that it would have accepted piecewise.
Folding the output again changes nothing: the fold is idempotent. Integer sums are exact;
float sums may differ in the last bit from summing in another order, as ClickHouse's own
merges already do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tally.ingest.kinds import Dist
from tally.ingest.records import KindsRecord, MetricRecord

Weigh = Callable[[Sequence[MetricRecord]], int]


class RecordFolder:
    """Folds one round of metric records; ``fold`` returns the records and how to weigh them."""

    def __init__(self, max_abs_value: float) -> None:
        self.max_abs_value = max_abs_value

    def fold(self, records: Sequence[MetricRecord]) -> tuple[list[MetricRecord], Weigh]:
        """Folded records (in order of first appearance) and ``weigh(chunk)``: the tracked
        events a chunk of them stands for."""
        groups: dict[tuple, list] = {}
        plain = MetricRecord
        for r in records:
            at = r.at
            if type(r) is plain:
                key = (r.route, r.keys, at - at % 60, r.paths)
            else:
                dists, gauges = r.kinds  # type: ignore[attr-defined]
                key = (
                    r.route,
                    r.keys,
                    at - at % 60,
                    r.paths,
                    tuple([d[0] for d in dists]),
                    tuple([g[0] for g in gauges]),
                )
            group = groups.get(key)
            if group is None:
                groups[key] = [r]
            else:
                group.append(r)
        out: list[MetricRecord] = []
        weights: dict[int, int] = {}
        for group in groups.values():
            if len(group) == 1:
                out.append(group[0])
                continue
            merged = self._merge(group)
            if merged is None:  # sums out of range: the events go as they came
                out.extend(group)
                continue
            weights[id(merged[0])] = len(group)
            out.extend(merged)
            for extra in merged[1:]:
                weights[id(extra)] = 0
        if not weights:
            return out, len

        def weigh(chunk: Sequence[MetricRecord]) -> int:
            get = weights.get
            return sum([get(id(r), 1) for r in chunk])

        return out, weigh

    def _merge(self, group: list[MetricRecord]) -> list[MetricRecord] | None:
        """One record for ``group`` (plus gauge-only records for min/max readings)."""
        first = group[0]
        at = max([r.at for r in group])
        # column sums, each left to right in arrival order (as the aggregator adds them)
        sums = [sum(column) for column in zip(*[r.values for r in group], strict=True)]
        # Half the limit: a float sum may round an int just above the limit down to it.
        if sums and not sum(map(abs, sums)) <= self.max_abs_value / 2:
            cap = self.max_abs_value
            if any(not -cap <= v <= cap for v in sums):
                return None
        if type(first) is MetricRecord:
            return [MetricRecord(at, first.keys, first.paths, sums, first.route)]
        dist_items, gauge_items = first.kinds  # type: ignore[attr-defined]
        dists = [_merge_dists(i, group) for i in range(len(dist_items))]
        lasts, lows, highs = [], [], []
        for i in range(len(gauge_items)):
            readings = [r.kinds[1][i] for r in group]  # type: ignore[attr-defined]
            last = max(readings, key=_by_time)
            low = min(readings, key=_by_value)
            high = max(readings, key=_by_value)
            lasts.append(last)
            if low[1] != last[1]:
                lows.append(low)
            if high[1] != last[1] and high[1] != low[1]:
                highs.append(high)
        out: list[MetricRecord] = [
            KindsRecord(at, first.keys, first.paths, sums, first.route, (dists, lasts))
        ]
        for extra in (lows, highs):
            if extra:
                out.append(KindsRecord(at, first.keys, (), [], first.route, ([], extra)))
        return out


def _by_time(reading: tuple[str, float, int]) -> tuple[int, float]:
    """The aggregator's order of gauge readings: by time, a tie to the larger value."""
    return reading[2], reading[1]


def _by_value(reading: tuple[str, float, int]) -> tuple[float, int]:
    return reading[1], reading[2]


def _merge_dists(index: int, group: list[MetricRecord]) -> tuple[str, Dist]:
    """The ``index``-th distribution of every record in ``group``, merged into one sketch."""
    items = [r.kinds[0][index] for r in group]  # type: ignore[attr-defined]
    path, d = items[0]
    count, total, square, vmin, vmax = d.count, d.total, d.square, d.vmin, d.vmax
    buckets = dict(d.buckets)
    for _, d in items[1:]:
        count += d.count
        total += d.total
        square += d.square
        if d.vmin < vmin:
            vmin = d.vmin
        if d.vmax > vmax:
            vmax = d.vmax
        for k, n in d.buckets.items():
            buckets[k] = buckets.get(k, 0) + n
    return path, Dist(count, total, square, vmin, vmax, buckets)
