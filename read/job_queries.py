"""Documented queries over job-instrumentation data (``tally.ingest.jobs``).

They read the nested shape every instrumented run is tracked with: ``total.<m>``,
``jobs.<job>.<m>`` and ``tenants.<tenant>.<m>`` under keys such as ``event::cron``,
``event::schedule`` or ``event::schedule::<tenant>``. ``group`` parameters pick the
breakdown: ``'jobs'`` or ``'tenants'``. Ranges are ``[start, end)``; ``start``/``end`` (and
``current``, where a query compares the last window with the ones before it) should sit on
bucket boundaries of the granularity. Run them like the queries in ``read.rollup_queries``:
``client.query(q.sql("tally", "1h"), parameters={...})``, or with ``run_job_query``, which
raises ``MissingPathsError`` naming the paths a query expected when it finds no rows because
the data lacks them (e.g. ``duration`` tracked as a plain number instead of count/sum/square).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tally.read.plan import Plan
from tally.read.queries import Sql
from tally.read.rollup_queries import Query, sketch_quantile
from tally.read.runner import run_sync
from tally.schemas.ddl import identifier
from tally.schemas.granularity import Granularity


class MissingPathsError(LookupError):
    """A job query found no rows because the key has none of the paths it needs."""


@dataclass(frozen=True)
class JobQuery(Query):
    """A ``Query`` whose template may also use ``{step}``: one bucket as an SQL interval.

    ``requires``: the measures (``<group>.<item>.<measure>``) without which it returns no rows;
    ``group``: the breakdown it always reads (else the ``group`` parameter).
    """

    requires: tuple[str, ...] = ()
    group: str | None = None

    def sql(self, database: str = "tally", granularity: str = "1h") -> str:
        """The SQL for a database and granularity (both validated, never user text)."""
        step = Granularity.parse(granularity).sql_interval
        return self.template.format(db=identifier(database), g=granularity, step=step)


_RANGE = "bucket >= {{start:DateTime}} AND bucket < {{end:DateTime}}"

_MEASURES = JobQuery(
    "measures",
    "Which measures does a key have under a breakdown in a range? (diagnostic)",
    f"""SELECT DISTINCT arrayStringConcat(arraySlice(splitByChar('.', path), 3), '.') AS measure
FROM {{db}}.rollups_{{g}}
WHERE key = {{{{key:String}}}} AND startsWith(path, {{{{group:String}}}} || '.')
  AND length(splitByChar('.', path)) >= 3 AND {_RANGE}
ORDER BY measure
LIMIT 100""",
)


def _items(group: str = "{{group:String}}") -> str:
    """One row per (item, bucket, measure) of a breakdown ``<group>.<item>.<measure...>``."""
    return f"""SELECT splitByChar('.', path)[2] AS item, bucket,
           arrayStringConcat(arraySlice(splitByChar('.', path), 3), '.') AS measure, value
    FROM {{db}}.rollups_{{g}}
    WHERE key = {{{{key:String}}}} AND startsWith(path, {group} || '.')
      AND {_RANGE}"""


CRON_RUNS = JobQuery(
    "cron_runs",
    "Did each cron run as often as expected? Runs per job per bucket (zero-filled, including "
    "the jobs listed in `jobs` that never ran) against `expected` runs per bucket.",
    f"""SELECT job, bucket, runs, {{{{expected:UInt32}}}} AS expected,
       runs < expected AS too_few, runs > expected AS too_many
FROM (
    SELECT job, bucket, sum(runs) AS runs
    FROM (
        SELECT splitByChar('.', path)[2] AS job, bucket, value AS runs
        FROM {{db}}.rollups_{{g}}
        WHERE key = {{{{key:String}}}} AND startsWith(path, 'jobs.') AND endsWith(path, '.count')
          AND length(splitByChar('.', path)) = 3 AND {_RANGE}
        UNION ALL
        SELECT arrayJoin({{{{jobs:Array(String)}}}}) AS job,
               toDateTime({{{{start:DateTime}}}}) AS bucket, 0 AS runs
    )
    GROUP BY job, bucket
    ORDER BY job, bucket
        WITH FILL FROM toDateTime({{{{start:DateTime}}}}) TO toDateTime({{{{end:DateTime}}}})
        STEP {{step}}
)
ORDER BY job, bucket""",
    requires=("count",),
    group="jobs",
)

IDLE_RUNS = JobQuery(
    "idle_runs",
    "Did a scheduler run but touch zero resources, and for how long? Per job (or tenant): "
    "buckets with runs, buckets with runs but no resources, and the current idle streak "
    "(idle buckets since the last bucket with resources) with its first bucket.",
    f"""SELECT item, count() AS run_buckets, countIf(idle) AS idle_buckets,
       countIf(idle AND bucket > last_busy) AS idle_streak,
       minIf(bucket, idle AND bucket > last_busy) AS idle_since,
       if(max(resources > 0), toNullable(any(last_busy)), NULL) AS last_busy_bucket
FROM (
    SELECT item, bucket, runs, resources, runs > 0 AND resources = 0 AS idle,
           maxIf(bucket, resources > 0) OVER (PARTITION BY item) AS last_busy
    FROM (
        SELECT item, bucket, sumIf(value, measure = 'count') AS runs,
               sumIf(value, measure = 'resources') AS resources
        FROM ({_items()})
        WHERE measure IN ('count', 'resources')
        GROUP BY item, bucket
        HAVING runs > 0
    )
)
GROUP BY item
HAVING idle_buckets > 0
ORDER BY idle_streak DESC, idle_buckets DESC, item""",
    requires=("count",),
)

TENANT_SURGE = JobQuery(
    "tenant_surge",
    "Which tenant suddenly enqueues far more than usual? Resources per bucket in the current "
    "window [current, end) against the average per bucket of [start, current); rows where "
    "the ratio is at least `ratio` (or the tenant is new) and the current average is at least "
    "`min_resources`. Averages divide by the buckets in which the key had any run.",
    f"""WITH
    (SELECT greatest(uniqExact(bucket), 1) FROM {{db}}.rollups_{{g}}
     WHERE key = {{{{key:String}}}} AND path = 'total.count'
       AND bucket >= {{{{start:DateTime}}}} AND bucket < {{{{current:DateTime}}}}) AS base_buckets,
    (SELECT greatest(uniqExact(bucket), 1) FROM {{db}}.rollups_{{g}}
     WHERE key = {{{{key:String}}}} AND path = 'total.count'
       AND bucket >= {{{{current:DateTime}}}} AND bucket < {{{{end:DateTime}}}}) AS now_buckets
SELECT item AS tenant, current_avg, baseline_avg,
       if(baseline_avg = 0, NULL, round(current_avg / baseline_avg, 3)) AS ratio
FROM (
    SELECT item,
           sumIf(value, bucket >= {{{{current:DateTime}}}}) / now_buckets AS current_avg,
           sumIf(value, bucket < {{{{current:DateTime}}}}) / base_buckets AS baseline_avg
    FROM ({_items("'tenants'")})
    WHERE measure = 'resources'
    GROUP BY item
)
WHERE current_avg >= {{{{min_resources:Float64}}}}
  AND (baseline_avg = 0 OR current_avg / baseline_avg >= {{{{ratio:Float64}}}})
ORDER BY baseline_avg = 0 DESC, current_avg / greatest(baseline_avg, 1e-9) DESC, tenant""",
    requires=("resources",),
    group="tenants",
)

FAILURE_SPREAD = JobQuery(
    "failure_spread",
    "Are failures isolated to one scheduler (or tenant) or global? Per item: runs, failures, "
    "its failure rate, its share of all failures, the overall failure rate and how many "
    "items failed at all. Isolated: one item holds ~all failures; global: most items fail "
    "near the overall rate.",
    f"""SELECT item, runs, failures, round(failures / runs, 4) AS failure_rate,
       round(failures / nullIf(sum(failures) OVER (), 0), 4) AS share_of_failures,
       round(sum(failures) OVER () / sum(runs) OVER (), 4) AS overall_rate,
       countIf(failures > 0) OVER () AS failing_items
FROM (
    SELECT item, sumIf(value, measure = 'count') AS runs,
           sumIf(value, measure = 'state.failure') AS failures
    FROM ({_items()})
    WHERE measure IN ('count', 'state.failure')
    GROUP BY item
    HAVING runs > 0
)
ORDER BY failures DESC, item""",
    requires=("count",),
)

DURATION_BY_BUCKET = JobQuery(
    "duration_by_bucket",
    "Mean duration per bucket per job (or tenant), with resources and ms per resource: "
    "growing ms per resource means slower; growing resources at steady ms per resource "
    "means more work.",
    f"""SELECT item, bucket, runs, round(duration / runs, 3) AS mean_ms, resources,
       if(resources = 0, NULL, round(duration / resources, 3)) AS ms_per_resource
FROM (
    SELECT item, bucket, sumIf(value, measure = 'duration.count') AS runs,
           sumIf(value, measure = 'duration.sum') AS duration,
           sumIf(value, measure = 'resources') AS resources
    FROM ({_items()})
    WHERE measure IN ('duration.count', 'duration.sum', 'resources')
    GROUP BY item, bucket
    HAVING runs > 0
)
ORDER BY item, bucket""",
    requires=("duration.count", "duration.sum"),
)

DURATION_TREND = JobQuery(
    "duration_trend",
    "Is duration growing? Per job (or tenant): mean duration in the current window "
    "[current, end) against [start, current), their ratio (`growth`), and ms per resource "
    "in both windows (to tell more work from slower work).",
    f"""SELECT item, previous_runs, round(previous_sum / previous_runs, 3) AS previous_mean_ms,
       current_runs, round(current_sum / current_runs, 3) AS current_mean_ms,
       round(current_mean_ms / nullIf(previous_mean_ms, 0), 3) AS growth,
       if(previous_resources = 0, NULL, round(previous_sum / previous_resources, 3))
           AS previous_ms_per_resource,
       if(current_resources = 0, NULL, round(current_sum / current_resources, 3))
           AS current_ms_per_resource
FROM (
    SELECT item,
           sumIf(value, measure = 'duration.count' AND bucket < c) AS previous_runs,
           sumIf(value, measure = 'duration.sum' AND bucket < c) AS previous_sum,
           sumIf(value, measure = 'resources' AND bucket < c) AS previous_resources,
           sumIf(value, measure = 'duration.count' AND bucket >= c) AS current_runs,
           sumIf(value, measure = 'duration.sum' AND bucket >= c) AS current_sum,
           sumIf(value, measure = 'resources' AND bucket >= c) AS current_resources
    FROM (SELECT *, {{{{current:DateTime}}}} AS c FROM ({_items()}))
    WHERE measure IN ('duration.count', 'duration.sum', 'resources')
    GROUP BY item
    HAVING previous_runs > 0 AND current_runs > 0
)
ORDER BY growth DESC, item""",
    requires=("duration.count", "duration.sum"),
)

QUEUE_LAG = JobQuery(
    "queue_lag",
    "How long do jobs wait in the queue? Per job (or tenant): runs with a known lag, mean "
    "lag and its p50/p95/p99 in ms (from the lag distribution, within 1%).",
    f"""SELECT item, runs, round(lag_sum / runs, 3) AS mean_lag_ms, p50, p95, p99
FROM (
    SELECT item, sumIf(value, measure = 'queue_lag.count') AS runs,
           sumIf(value, measure = 'queue_lag.sum') AS lag_sum
    FROM ({_items()})
    WHERE startsWith(measure, 'queue_lag.')
    GROUP BY item
    HAVING runs > 0
) AS totals
LEFT JOIN (
    SELECT item, {sketch_quantile("0.5")} AS p50, {sketch_quantile("0.95")} AS p95,
           {sketch_quantile("0.99")} AS p99
    FROM (
        SELECT item, mapKeys(sk) AS ks, arrayCumSum(mapValues(sk)) AS cum,
               toFloat64(arraySum(mapValues(sk))) AS n, vmin, vmax
        FROM (
            SELECT splitByChar('.', path)[2] AS item, sumMap(sketch) AS sk,
                   min(vmin) AS vmin, max(vmax) AS vmax
            FROM {{db}}.sketches_{{g}}
            WHERE key = {{{{key:String}}}} AND startsWith(path, {{{{group:String}}}} || '.')
              AND endsWith(path, '.queue_lag') AND length(splitByChar('.', path)) = 3
              AND {_RANGE}
            GROUP BY item
        )
    )
) AS lags USING item
ORDER BY mean_lag_ms DESC, item""",
    requires=("queue_lag.count", "queue_lag.sum"),
)

_STATE_COLUMNS = """sumIf(value, measure = 'count') AS runs,
           sumIf(value, measure = 'state.success') AS success,
           sumIf(value, measure = 'state.failure') AS failure,
           sumIf(value, measure = 'state.limited') AS limited,
           sumIf(value, measure = 'state.skipped') AS skipped,
           sumIf(value, measure = 'state.retry') AS retry"""
_STATE_OUTPUT = """runs, success, failure, limited, skipped, retry,
       runs - success - failure - limited - skipped - retry AS other,
       round(success / runs, 4) AS success_rate"""


def _states(by: str, source: str) -> str:
    """Runs per state and success rate, grouped ``by`` a column of ``source``'s measures."""
    return f"""SELECT {by}, {_STATE_OUTPUT}
FROM (
    SELECT {by}, {_STATE_COLUMNS}
    FROM ({source})
    WHERE measure = 'count' OR startsWith(measure, 'state.')
    GROUP BY {by}
    HAVING runs > 0
)
ORDER BY {by}"""


JOB_STATES = JobQuery(
    "job_states",
    "How did the runs of each job (or tenant) end? Per item: runs, the runs per state "
    "(success, failure, limited, skipped, retry; `other` = the job's own states such as "
    "duplicate or deleted) and success_rate = success / runs.",
    _states("item", _items()),
)

STATE_TIMELINE = JobQuery(
    "state_timeline",
    "How did all runs of a key end, per bucket? Overall for a global key (event::resource), "
    "one tenant's for a tenant key (event::resource::acme): runs, runs per state, `other` "
    "and success_rate (buckets without runs are left out).",
    _states(
        "bucket",
        f"""
        SELECT bucket, substring(path, 7) AS measure, value
        FROM {{db}}.rollups_{{g}}
        WHERE key = {{{{key:String}}}} AND startsWith(path, 'total.') AND {_RANGE}
    """,
    ),
)

LIMITED_RUNS = JobQuery(
    "limited_runs",
    "How often was a job (or tenant) stopped by a busy lock or limiter? Per item and bucket "
    "with runs: runs, limited runs and limited_rate = limited / runs.",
    f"""SELECT item, bucket, runs, limited, round(limited / runs, 4) AS limited_rate
FROM (
    SELECT item, bucket, sumIf(value, measure = 'count') AS runs,
           sumIf(value, measure = 'state.limited') AS limited
    FROM ({_items()})
    WHERE measure IN ('count', 'state.limited')
    GROUP BY item, bucket
    HAVING runs > 0
)
ORDER BY item, bucket""",
)

RESULT_CODES = JobQuery(
    "result_codes",
    "Which result codes did each tenant (or job) get? Per item and code: runs with that "
    "code and its share of the item's runs that reported a code.",
    f"""SELECT item, code, runs, round(runs / sum(runs) OVER (PARTITION BY item), 4) AS share
FROM (
    SELECT item, substring(measure, 7) AS code, sum(value) AS runs
    FROM ({_items()})
    WHERE startsWith(measure, 'codes.')
    GROUP BY item, code
    HAVING runs > 0
)
ORDER BY item, runs DESC, code""",
)

JOB_QUERIES = {
    q.name: q
    for q in (
        JOB_STATES,
        STATE_TIMELINE,
        LIMITED_RUNS,
        RESULT_CODES,
        CRON_RUNS,
        IDLE_RUNS,
        TENANT_SURGE,
        FAILURE_SPREAD,
        DURATION_BY_BUCKET,
        DURATION_TREND,
        QUEUE_LAG,
    )
}


def job_query(
    query: JobQuery,
    parameters: Mapping[str, Any],
    database: str = "tally",
    granularity: str = "1h",
) -> Plan[list[tuple]]:
    """``query``'s rows, as a plan (``read/plan.py``).

    When there are none and the key lacks a measure the query needs under its breakdown in
    the range, raise ``MissingPathsError`` saying which paths were expected and which
    measures the key has, instead of an empty answer that looks like "nothing happened".
    """
    rows = list((yield Sql(query.sql(database, granularity), dict(parameters))).result_rows)
    if rows or not query.requires:
        return rows
    group = query.group or str(parameters.get("group", ""))
    probe = {k: parameters[k] for k in ("key", "start", "end") if k in parameters}
    measures = Sql(_MEASURES.sql(database, granularity), {**probe, "group": group})
    found = [r[0] for r in (yield measures).result_rows]
    missing = [m for m in query.requires if m not in found]
    if missing:
        expected = ", ".join(f"{group}.<item>.{m}" for m in query.requires)
        raise MissingPathsError(
            f"{query.name}: no rows, because key {parameters.get('key')!r} has no"
            f" {', '.join(missing)} under {group}.* in the range; it reads {expected}"
            f" (measures found there: {', '.join(found) or 'none'})"
        )
    return rows


def run_job_query(
    client: Any,
    query: JobQuery,
    parameters: Mapping[str, Any],
    database: str = "tally",
    granularity: str = "1h",
) -> list[tuple]:
    """Run ``query`` with a sync clickhouse-connect client; its rows (see ``job_query``)."""
    return run_sync(client, job_query(query, parameters, database, granularity))
