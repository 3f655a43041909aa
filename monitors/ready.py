"""Ready-made monitors for what the job instrumentation emits (docs/jobs.md), one YAML line each:

    ready:
      - cron_below_expected: {job: billing__cron__schedule_invoices_job, window: 1h, expected: 1}
      - scheduler_idle: {job: billing__tenants__schedule_invoices_job, idle_for: 30m}

Every parameter has a default except ``job`` (and ``queue`` for queue depth and stuck); ``notify``,
``labels``, ``for`` and ``granularity`` pass through to the monitor. ``for`` is pending time
*after* the condition holds: ``scheduler_idle`` with ``idle_for: 30m, for: 30m`` alerts after
about an hour idle (``tally monitors list`` shows the effective durations). Keys and paths
follow the job shape: ``event::cron`` / ``event::schedule[::<tenant>]`` / ``event::job`` with
``jobs.<job>.{count,resources,duration.sum,duration.count,state.*,retries,queue_lag.*}``
(``duration`` and ``queue_lag`` are distributions; monitors read their ``.sum``/``.count``
counters). Queue depth is the sampler's gauge ``depth`` under
``event::queue::<framework>::<queue>`` (``queue: rq::default``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tally.monitors.loader import Invalid, Node

PASS_THROUGH = ("notify", "labels", "annotations", "for", "keep_firing_for", "notify_every",
                "granularity", "name")  # fmt: skip


def _cron_below_expected(p: dict[str, Any]) -> dict[str, Any]:
    job = p["job"]
    return {
        "name": f"cron-below-expected:{job}", "key": "event::cron", "path": f"jobs.{job}.count",
        "window": p.get("window", "1h"),
        "condition": {"type": "expected", "fewer_than": p.get("expected", 1)},
        "annotations": {"summary": "cron {{ monitor }} ran {{ value }} times in the window "
                        "ending {{ bucket }}"},
    }  # fmt: skip


def _schedule_failures(p: dict[str, Any]) -> dict[str, Any]:
    job = p["job"]
    return {
        "name": f"schedule-failures:{job}", "key": p.get("key", "event::schedule"),
        "path": f"jobs.{job}.state.failure", "window": p.get("window", "10m"),
        "condition": {"type": "threshold", "above": p.get("above", 0)},
    }  # fmt: skip


def _scheduler_idle(p: dict[str, Any]) -> dict[str, Any]:
    job = p["job"]
    return {
        "name": f"scheduler-idle:{job}", "key": p.get("key", "event::schedule::*"),
        "path": f"jobs.{job}.resources",
        "condition": {"type": "zero", "for": p.get("idle_for", "30m"),
                      "active": f"jobs.{job}.count"},
        "annotations": {"summary": "{{ segment }}: scheduler ran but touched nothing"},
    }  # fmt: skip


def _duration_drift(p: dict[str, Any]) -> dict[str, Any]:
    job = p["job"]
    return {
        "name": f"duration-drift:{job}", "key": p.get("key", "event::schedule"),
        "expression": f"jobs.{job}.duration.sum / jobs.{job}.duration.count",
        "granularity": p.get("granularity", "1h"),
        "condition": {"type": "drift", "direction": "up", "history": p.get("history", 48),
                      "k": p.get("k", 0.5), "h": p.get("h", 5.0)},
    }  # fmt: skip


def _limited_increasing(p: dict[str, Any]) -> dict[str, Any]:
    job = p["job"]
    return {
        "name": f"limited-increasing:{job}", "key": p.get("key", "event::schedule"),
        "path": f"jobs.{job}.state.limited", "window": p.get("window", "10m"),
        "condition": {"type": "anomaly", "direction": "up", "history": p.get("history", 36),
                      "k": p.get("k", 3.0), "floor": p.get("floor", 1.0)},
    }  # fmt: skip


def _tenant_volume(p: dict[str, Any]) -> dict[str, Any]:
    job = p["job"]
    return {
        "name": f"tenant-volume:{job}", "key": p.get("key", "event::schedule"),
        "path": "tenants.*.resources", "granularity": p.get("granularity", "1h"),
        "condition": {"type": "anomaly", "direction": "up", "history": p.get("history", 24),
                      "k": p.get("k", 5.0), "floor": p.get("floor", 10.0)},
    }  # fmt: skip


def _queue_latency(p: dict[str, Any]) -> dict[str, Any]:
    # The mean lag of the window from the distribution's .sum/.count counters: summable over
    # any window and key pattern, unlike a per-bucket quantile.
    job = p["job"]
    return {
        "name": f"queue-latency:{job}", "key": p.get("key", "event::job"),
        "expression": f"jobs.{job}.queue_lag.sum / jobs.{job}.queue_lag.count",
        "window": p.get("window", "5m"),
        "condition": {"type": "threshold", "above": p.get("above_ms", 60_000)},
    }  # fmt: skip


def _queue_depth(p: dict[str, Any]) -> dict[str, Any]:
    # ``queue`` is ``<framework>::<queue>`` as the sampler keys it (event::queue::rq::default);
    # depth is a gauge: each bucket's last reading.
    queue = p["queue"]
    return {
        "name": f"queue-depth:{queue}", "key": p.get("key", f"event::queue::{queue}"),
        "path": "depth", "gauge": True, "aggregate": "last",
        "condition": {"type": "drift", "direction": "up", "history": p.get("history", 30),
                      "k": p.get("k", 0.5), "h": p.get("h", 5.0)},
    }  # fmt: skip


def _queue_stuck(p: dict[str, Any]) -> dict[str, Any]:
    # The sampler's oldest_age_s gauge: the oldest waiting job has waited too long.
    queue = p["queue"]
    return {
        "name": f"queue-stuck:{queue}", "key": p.get("key", f"event::queue::{queue}"),
        "path": "oldest_age_s", "gauge": True, "aggregate": "max",
        "window": p.get("window", "5m"),
        "condition": {"type": "threshold", "above": p.get("above_s", 600)},
    }  # fmt: skip


def _excessive_retries(p: dict[str, Any]) -> dict[str, Any]:
    job = p["job"]
    return {
        "name": f"excessive-retries:{job}", "key": p.get("key", "event::job"),
        "expression": f"jobs.{job}.retries / jobs.{job}.count", "window": p.get("window", "15m"),
        "condition": {"type": "threshold", "above": p.get("above", 0.2)},
    }  # fmt: skip


def _failure_cluster(p: dict[str, Any]) -> dict[str, Any]:
    jobs = p.get("jobs", 3)
    return {
        "name": p.get("name", "failure-cluster"), "key": p.get("key", "event::job"),
        "path": "jobs.*.state.failure", "window": p.get("window", "5m"),
        "count_segments_above": p.get("failures", 0),
        "condition": {"type": "threshold", "above": jobs - 1},
        "annotations": {"summary": "{{ value }} jobs failed in the window ending {{ bucket }}"},
    }  # fmt: skip


READY: dict[str, tuple[Callable[[dict[str, Any]], dict[str, Any]], tuple[str, ...]]] = {
    "cron_below_expected": (_cron_below_expected, ("job",)),
    "schedule_failures": (_schedule_failures, ("job",)),
    "scheduler_idle": (_scheduler_idle, ("job",)),
    "duration_drift": (_duration_drift, ("job",)),
    "limited_increasing": (_limited_increasing, ("job",)),
    "tenant_volume": (_tenant_volume, ("job",)),
    "queue_latency": (_queue_latency, ("job",)),
    "queue_depth": (_queue_depth, ("queue",)),
    "queue_stuck": (_queue_stuck, ("queue",)),
    "excessive_retries": (_excessive_retries, ("job",)),
    "failure_cluster": (_failure_cluster, ()),
}


class _Params(dict):
    """The entry's parameters, remembering which ones the builder read."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)


def _node(value: Any, line: int) -> Any:
    if isinstance(value, dict):
        node = Node({k: _node(v, line) for k, v in value.items()})
        node.line, node.lines = line, {k: line for k in value}
        return node
    return value


def expand(entry: Any) -> list[Node]:
    """The monitor mappings of one ``ready:`` entry (``{name: {params}}``)."""
    line = getattr(entry, "line", 0)
    if not isinstance(entry, dict) or len(entry) != 1:
        raise Invalid(line, f"a ready entry is one of {sorted(READY)} with its parameters")
    ((kind, params),) = entry.items()
    if kind not in READY:
        raise Invalid(line, f"unknown ready-made monitor {kind!r}; one of {sorted(READY)}")
    build, required = READY[kind]
    if params is not None and not isinstance(params, dict):
        raise Invalid(line, f"{kind} takes a mapping of parameters")
    params = _Params(params or {})
    for name in required:
        if not isinstance(params.get(name), str):
            raise Invalid(line, f"{kind} needs '{name}' (text)")
    definition = build(params)
    unknown = sorted(set(params) - params.read - set(PASS_THROUGH))
    if unknown:
        known = ", ".join(sorted((params.read | set(PASS_THROUGH)) - {"name"}))
        raise Invalid(line, f"{kind} has no parameter {unknown[0]!r}; it takes {known}")
    for name in PASS_THROUGH:
        if name in params:
            definition[name] = params[name]
    return [_node(definition, line)]
