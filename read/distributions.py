"""Quantiles of distributions and gauge readings, per bucket (SQL and result assembly).

Both read the ``sketches_<g>`` views (``schemas/ddl.py``): one row per (key, bucket, path)
with the merged sketch, min, max and the last gauge reading. Quantiles are computed here in
Python from the merged buckets (``schemas/sketch.quantile``, numpy's linear definition,
relative error at most ``ALPHA``); ``read.rollup_queries.QUANTILES`` is the same computation in
SQL for any client.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec

from tally.read.errors import ReadError
from tally.read.queries import Sql, tiles_where
from tally.read.settled import Cut
from tally.read.timerange import Window
from tally.schemas import sketch
from tally.schemas.ddl import SKETCH_PREFIX, identifier

_RANGE = "bucket >= toDateTime({start:UInt32}, 'UTC') AND bucket < toDateTime({end:UInt32}, 'UTC')"
DEFAULT_QUANTILES = (0.5, 0.9, 0.95, 0.99, 0.999)


class Distribution(msgspec.Struct, frozen=True):
    """A distribution path of a key over aligned buckets.

    ``quantiles[i][j]`` is quantile ``qs[i]`` in bucket ``j`` (``None`` where the bucket has no
    sample); each is within ``alpha`` (relative) of the exact percentile of the samples.
    """

    key: str
    path: str
    granularity: str
    time_zone: str
    buckets: list[int]
    qs: list[float]
    quantiles: list[list[float | None]]
    count: list[int]
    min: list[float | None]
    max: list[float | None]
    alpha: float = sketch.ALPHA

    def quantile(self, q: float) -> list[float | None]:
        """The points of quantile ``q`` (one of ``qs``)."""
        return self.quantiles[self.qs.index(q)]


class GaugeSeries(msgspec.Struct, frozen=True):
    """A gauge path of a key: per bucket the last reading (by time), its time, min and max."""

    key: str
    path: str
    granularity: str
    time_zone: str
    buckets: list[int]
    last: list[float | None]
    last_at_ms: list[int | None]
    min: list[float | None]
    max: list[float | None]


def check_quantiles(qs: Sequence[float]) -> list[float]:
    """``qs`` as floats in [0, 1]; ``ReadError`` otherwise."""
    out = []
    for q in qs:
        if type(q) not in (int, float) or not 0 <= q <= 1:
            raise ReadError(f"quantile {q!r} is not a number in [0, 1]")
        out.append(float(q))
    if not out or len(out) > 100:
        raise ReadError("ask for 1 to 100 quantiles")
    return out


def sketch_rows(
    database: str, granularity: str, key: str, path: str, w: Window, cut: Cut | None = None
) -> Sql:
    """``(t, keys, counts, vmin, vmax, last_at_ms, last)`` per bucket of one key and path; with
    a ``cut`` (``read/settled.py``) the last bucket merges the stored rows of its pieces."""
    db = identifier(database)
    view = identifier(f"{SKETCH_PREFIX}{granularity}")
    end = cut.whole_end if cut else w.end
    params: dict[str, object] = {"key": key, "path": path, "start": w.start, "end": end}
    source = f"""SELECT toUInt32(toUnixTimestamp(bucket)) AS t, sketch, vmin, vmax, last
FROM {db}.{view}
WHERE key = {{key:String}} AND path = {{path:String}} AND {_RANGE}"""
    if cut is not None and cut.partial is not None:
        tiles, tile_params = tiles_where(cut.pieces)
        params |= tile_params | {"partial": cut.partial}
        # new aliases: ClickHouse would read an alias named like a column in WHERE
        source += f"""
UNION ALL
SELECT {{partial:UInt32}} AS t, sumMap(sketch) AS merged, min(vmin) AS lo, max(vmax) AS hi,
       max(last) AS latest
FROM {db}.rollups
WHERE key = {{key:String}} AND path = {{path:String}} AND vmin IS NOT NULL AND ({tiles})
GROUP BY t"""
    text = f"""SELECT t, mapKeys(sketch), mapValues(sketch), vmin, vmax, last.1, last.2
FROM ({source})"""
    return Sql(text, params)


def build_distribution(
    key: str, path: str, w: Window, time_zone: str, qs: list[float], rows: Iterable[Sequence]
) -> Distribution:
    """Per bucket: count, min, max and the asked quantiles (``None`` for empty buckets)."""
    index = {b: i for i, b in enumerate(w.buckets)}
    n = len(w.buckets)
    points: list[list[float | None]] = [[None] * n for _ in qs]
    count, lo, hi = [0] * n, [None] * n, [None] * n
    for t, keys, counts, vmin, vmax, *_ in rows:
        i = index.get(int(t))
        if i is None or not counts:
            continue
        count[i] = int(sum(counts))
        lo[i], hi[i] = vmin, vmax
        for j, q in enumerate(qs):
            points[j][i] = sketch.quantile(list(keys), list(counts), q, vmin, vmax)
    return Distribution(
        key, path, str(w.granularity), time_zone, list(w.buckets), qs, points, count, lo, hi
    )


def build_gauge(key: str, path: str, w: Window, time_zone: str, rows: Iterable[Sequence]):
    """Per bucket: the last reading and its time, min and max (``None`` for empty buckets)."""
    index = {b: i for i, b in enumerate(w.buckets)}
    n = len(w.buckets)
    last, at, lo, hi = [None] * n, [None] * n, [None] * n, [None] * n
    for t, _keys, _counts, vmin, vmax, last_at, last_value in rows:
        i = index.get(int(t))
        if i is None or not last_at:
            continue
        last[i], at[i], lo[i], hi[i] = last_value, int(last_at), vmin, vmax
    return GaugeSeries(key, path, str(w.granularity), time_zone, list(w.buckets), last, at, lo, hi)
