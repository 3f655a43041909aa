"""What one execution ships on the ``tally.traces`` topic (msgpack, array-like structs).

Evolution rules as for the metrics wire format: add fields only at the end, with defaults.
"""

from __future__ import annotations

import msgspec

BLOCK = "block"
NOTE = "note"
RESULT = "result"
ARTIFACT = "artifact"
OK = "ok"


class Line(msgspec.Struct, array_like=True, gc=False):
    """One trace line: a block (with duration and outcome), a note, a result or an artifact.

    ``seq`` numbers lines from 1 in the order they started; ``parent`` is the ``seq`` of the
    enclosing block (0 at the top). ``offset_us`` is the start relative to the execution's
    start. ``outcome`` is ``ok`` or the exception type that left the block. ``truncated`` says
    ``text`` was cut; ``size`` is then the original size in bytes.
    """

    seq: int
    parent: int
    depth: int
    kind: str
    name: str
    offset_us: int
    duration_us: int = 0
    outcome: str = ""
    text: str = ""
    truncated: bool = False
    size: int = 0


class LogEvent(msgspec.Struct, array_like=True, gc=False):
    """A lifecycle event of the job log: enqueued, started, retried, finished or failed.

    An ``enqueued`` event is recorded by the run that enqueued the job: ``job`` is then the
    enqueued job and ``ref`` its framework id (e.g. Celery's task id).
    """

    at_us: int
    event: str
    job: str
    attempt: int = 0
    args: str = ""
    detail: str = ""
    ref: str = ""


class Execution(msgspec.Struct, array_like=True, gc=False):
    """One run of an instrumented job: its index row, its trace lines and its job log."""

    id: str
    parent_id: str
    ref: str
    job: str
    tenant: str
    key: str
    state: str
    code: str
    error: str
    attempt: int
    started_us: int
    duration_us: int
    tags: dict[str, str]
    sampled: str
    lines: list[Line]
    events: list[LogEvent]
    dropped: int = 0
    # a failed or retried run: its exception's message and traceback (bounded, TraceLimits)
    message: str = ""
    traceback: str = ""
    hook_key: str = ""  # the framework hook's key when a decorator adopted the run


class TraceBatchV1(msgspec.Struct, array_like=True, gc=False, tag=1):
    """One Kafka record of the traces topic: several executions from one producer."""

    source: str
    executions: list[Execution]
