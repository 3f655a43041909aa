"""Traces: follow one execution of a job, linked from the numbers (see docs/traces.md).

    from tally.traces import trace, note, tag, artifact

    with trace("Fetching main product") as block:
        product = fetch(id)
        block.result(product)

Inside a run of an instrumented job (``JobTracker(..., traces=TraceRecorder(...))``) the
blocks, notes, tags and artifacts belong to that run's execution; outside one they cost a
context-variable lookup and do nothing. Nothing here raises into the job or blocks it.
"""

from __future__ import annotations

from tally.traces.api import artifact, current_execution_id, note, result, tag, trace
from tally.traces.limits import TraceLimits
from tally.traces.recorder import TraceRecorder
from tally.traces.sampling import SamplingPolicy

__all__ = [
    "SamplingPolicy",
    "TraceLimits",
    "TraceRecorder",
    "artifact",
    "current_execution_id",
    "note",
    "result",
    "tag",
    "trace",
]
