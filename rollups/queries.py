"""Documented example queries over the rollup views, with server-side parameters.

Each query reads a ``rollups_<granularity>`` view (already summed, buckets in the configured
zone) and takes ClickHouse query parameters (``{key:String}`` ...), so no value is ever pasted
into SQL. Run them with any client: ``client.query(q.sql(), parameters={...})`` in
clickhouse-connect, or ``curl --data-urlencode param_key=...`` over HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass

from tally.schemas.ddl import identifier
from tally.schemas.granularity import Granularity


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
    "What share of the jobs of a key succeeded, per bucket?",
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

QUERIES = {q.name: q for q in (TIMELINE, SUCCESS_RATE, BREAKDOWN, MEAN_STDDEV)}
