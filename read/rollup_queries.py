"""Documented example queries over the rollup views, with server-side parameters.

Each query reads a ``rollups_<granularity>`` view (already summed, buckets in the configured
zone) and takes ClickHouse query parameters (``{key:String}`` ...), so no value is ever pasted
into SQL. Run them with any client: ``client.query(q.sql(), parameters={...})`` in
clickhouse-connect, or ``curl --data-urlencode param_key=...`` over HTTP. Every parameter a
query uses must be passed: ``q.parameters()`` lists them, ``PARAMETERS`` says what each means.

On job-instrumentation data (``tally.ingest.jobs``) every path sits under ``total.``,
``jobs.<job>.`` or ``tenants.<tenant>.``: ``timeline`` works with ``path = 'total.count'``,
``breakdown`` with ``prefix = 'total.codes.'``, ``mean_stddev`` with ``measure =
'total.duration'``; ``success_rate`` does not (it reads top-level ``success``/``count``), and
``read.job_queries`` has the queries made for that shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tally.schemas.ddl import identifier
from tally.schemas.granularity import Granularity
from tally.schemas.sketch import GAMMA, ZERO_KEY

# Every query parameter used by this module and ``read.job_queries``, with its meaning.
PARAMETERS: dict[str, str] = {
    "key": "the rollup key, e.g. `event::resource` (all tenants) or `event::resource::acme`",
    "start": "first bucket of the range, inclusive (a datetime on a bucket boundary)",
    "end": "end of the range, exclusive (a datetime on a bucket boundary)",
    "current": "start of the current window inside [start, end): [start, current) is the "
    "baseline, [current, end) the window compared with it",
    "path": "one dotted path, e.g. `total.count` or `jobs.billing__sync_invoice_job.count`",
    "prefix": "the path prefix to break down, with its trailing dot, e.g. `total.codes.` or "
    "`tenants.`",
    "suffix": "what each broken-down path ends with: `''` for leaves such as codes, "
    "`.count` for `tenants.<tenant>.count`",
    "measure": "a measure sent as count/sum/square, without the suffix, e.g. "
    "`total.duration` or `jobs.<job>.price`",
    "group": "`'jobs'` (one row per job) or `'tenants'` (one row per tenant)",
    "expected": "runs expected per bucket (UInt32)",
    "jobs": "job names to report even if they never ran (Array(String); may be empty)",
    "ratio": "minimum current/baseline ratio to report (Float64)",
    "min_resources": "minimum current resources per bucket to report (Float64)",
    "qs": "quantiles to compute, each in [0, 1] (Array(Float64)), e.g. [0.5, 0.95, 0.99]",
}
_PARAM = re.compile(r"\{(\w+):([^{}]+)\}")


@dataclass(frozen=True)
class Query:
    """A named, documented query template."""

    name: str
    question: str
    template: str

    def sql(self, database: str = "tally", granularity: str = "1h") -> str:
        """The SQL for a database and granularity (both validated, never user text)."""
        Granularity.parse(granularity)
        return self.template.format(db=identifier(database), g=granularity)

    def parameters(self) -> dict[str, str]:
        """The query's parameters and their ClickHouse types, in order of first use.

        Pass every one of them in ``parameters={...}``; ``PARAMETERS`` says what each means.
        """
        found: dict[str, str] = {}
        for name, kind in _PARAM.findall(self.sql()):
            found.setdefault(name, kind)
        return found


_RANGE = "bucket >= {{start:DateTime}} AND bucket < {{end:DateTime}}"

TIMELINE = Query(
    "timeline",
    "How did one path of one key evolve? (zero-filled per bucket)",
    f"""SELECT bucket, sum(value) AS value
FROM {{db}}.rollups_{{g}}
WHERE key = {{{{key:String}}}} AND path = {{{{path:String}}}} AND {_RANGE}
GROUP BY bucket
ORDER BY bucket""",
)

SUCCESS_RATE = Query(
    "success_rate",
    "What share of the events of a key succeeded, per bucket? Reads the top-level paths "
    "`success` and `count` (the shape of the client example); job instrumentation data has "
    "`total.state.success` and `total.count` instead: use `job_states` or `state_timeline` "
    "from `read.job_queries` for it.",
    f"""SELECT bucket,
       sumIf(value, path = 'success') AS success,
       sumIf(value, path = 'count') AS count,
       round(success / nullIf(count, 0), 4) AS success_rate
FROM {{db}}.rollups_{{g}}
WHERE key = {{{{key:String}}}} AND path IN ('success', 'count') AND {_RANGE}
GROUP BY bucket
ORDER BY bucket""",
)

BREAKDOWN = Query(
    "breakdown",
    "How does a nested path split, e.g. codes.* or tenants.*.count? "
    "(prefix 'codes.' and suffix '', or prefix 'tenants.' and suffix '.count')",
    f"""SELECT substring(path, length({{{{prefix:String}}}}) + 1,
           length(path) - length({{{{prefix:String}}}}) - length({{{{suffix:String}}}})) AS item,
       sum(value) AS value
FROM {{db}}.rollups_{{g}}
WHERE key = {{{{key:String}}}}
  AND startsWith(path, {{{{prefix:String}}}}) AND endsWith(path, {{{{suffix:String}}}})
  AND position(item, '.') = 0
  AND {_RANGE}
GROUP BY item
ORDER BY value DESC, item""",
)

MEAN_STDDEV = Query(
    "mean_stddev",
    "Mean and (population) standard deviation of a measure sent as count/sum/square.",
    f"""SELECT bucket, c AS count, s / c AS mean, sqrt(greatest(q / c - pow(s / c, 2), 0)) AS stddev
FROM (
    SELECT bucket,
           sumIf(value, path = {{{{measure:String}}}} || '.count') AS c,
           sumIf(value, path = {{{{measure:String}}}} || '.sum') AS s,
           sumIf(value, path = {{{{measure:String}}}} || '.square') AS q
    FROM {{db}}.rollups_{{g}}
    WHERE key = {{{{key:String}}}} AND startsWith(path, {{{{measure:String}}}} || '.') AND {_RANGE}
    GROUP BY bucket
)
WHERE c > 0
ORDER BY bucket""",
)

# A bucket's representative value, clamped to the bucket's exact min and max.
_REP = (
    f"least(vmax, greatest(vmin, if(ks[{{i}}] = {ZERO_KEY}, 0.,"
    f" 2 * pow({GAMMA!r}, ks[{{i}}]) / (1 + {GAMMA!r}))))"
)

_LOW = "arrayFirstIndex(c -> c > floor(q * (n - 1)), cum)"
_HIGH = "arrayFirstIndex(c -> c > least(floor(q * (n - 1)) + 1, n - 1), cum)"


def sketch_quantile(q: str) -> str:
    """SQL for quantile ``q`` (an SQL expression) of a merged sketch.

    Expects the columns ``ks`` (``mapKeys(sketch)``), ``cum`` (``arrayCumSum(mapValues(
    sketch))``), ``n`` (the sample count as Float64), ``vmin`` and ``vmax``.
    """
    low, high = _REP.format(i=_LOW), _REP.format(i=_HIGH)
    body = f"({low}) + (q * (n - 1) - floor(q * (n - 1))) * (({high}) - ({low}))"
    return body.replace("q *", f"({q}) *")


QUANTILES = Query(
    "quantiles",
    "Quantiles of a distribution path (tracked with `dist()`), per bucket, within 1% "
    "(relative) of the exact percentile (numpy's linear definition): rank q(n-1), "
    "interpolated between the two neighbouring samples' bucket values.",
    f"""SELECT bucket, toUInt64(n) AS count, vmin AS min, vmax AS max,
       arrayMap(q -> (
           ({_REP.format(i=_LOW)})
           + (q * (n - 1) - floor(q * (n - 1)))
           * (({_REP.format(i=_HIGH)}) - ({_REP.format(i=_LOW)}))
       ), {{{{qs:Array(Float64)}}}}) AS quantiles
FROM (
    SELECT bucket, mapKeys(sketch) AS ks, arrayCumSum(mapValues(sketch)) AS cum,
           toFloat64(arraySum(mapValues(sketch))) AS n, vmin, vmax
    FROM {{db}}.sketches_{{g}}
    WHERE key = {{{{key:String}}}} AND path = {{{{path:String}}}} AND {_RANGE}
)
WHERE n > 0
ORDER BY bucket""",
)

GAUGE = Query(
    "gauge",
    "A gauge path (tracked with `gauge()`) per bucket: the last reading by time (a tie goes "
    "to the larger value), when it was taken, and the bucket's min and max.",
    f"""SELECT bucket, last.2 AS last_value, fromUnixTimestamp64Milli(last.1) AS last_at,
       vmin AS min, vmax AS max
FROM {{db}}.sketches_{{g}}
WHERE key = {{{{key:String}}}} AND path = {{{{path:String}}}} AND last.1 > 0 AND {_RANGE}
ORDER BY bucket""",
)

QUERIES = {q.name: q for q in (TIMELINE, SUCCESS_RATE, BREAKDOWN, MEAN_STDDEV, QUANTILES, GAUGE)}
