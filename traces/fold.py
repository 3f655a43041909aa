"""The trace writer's per-partition fold: decoded executions turned into rows, in offset order.

Rows are kept in the order their records were consumed, so a replay of the same offset range
builds byte-identical inserts (the same blocks, hence the same dedup ids in ClickHouse).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from tally.engine.protocols import Rejected
from tally.schemas.wire import WireError
from tally.traces.codec import decode_batch
from tally.traces.model import Execution

EXECUTION_COLUMNS = (
    "execution_id", "parent_id", "ref", "job", "tenant", "key", "state", "code", "error",
    "attempt", "started", "duration_us", "tags", "sampled", "lines", "dropped",
    "error_message", "error_traceback", "args", "hook_key",
)  # fmt: skip
LINE_COLUMNS = (
    "execution_id", "started", "seq", "parent", "depth", "kind", "name", "offset_us",
    "duration_us", "outcome", "text", "truncated", "size",
)  # fmt: skip
JOB_LOG_COLUMNS = (
    "at", "execution_id", "parent_id", "ref", "job", "tenant", "key", "event", "state",
    "attempt", "args", "detail", "tags",
)  # fmt: skip
MAX_U32 = 2**32 - 1


def _time(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, UTC)


def _started_args(e: Execution) -> str:
    """The run's own arguments: those of its ``started`` job-log event."""
    return next((ev.args for ev in e.events if ev.event == "started"), "")


@dataclass
class TraceRows:
    """Rows for the three tables (row-oriented tuples, columns as above)."""

    executions: list[tuple] = field(default_factory=list)
    lines: list[tuple] = field(default_factory=list)
    job_log: list[tuple] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.executions) + len(self.lines) + len(self.job_log)


class TraceFold:
    """The trace writer's ``engine.protocols.Fold``: rows for three tables, in offset order."""

    def __init__(self) -> None:
        self.events = 0
        self.nbytes = 0  # estimated bytes held (the engine's memory bound reads it)
        self._rows = TraceRows()

    def __len__(self) -> int:
        return len(self._rows)

    def add_record(self, payload: bytes, offset: int, timestamp: int) -> list[Rejected]:
        """Add one Kafka record's executions; a bad record is returned to be dead-lettered."""
        try:
            batch = decode_batch(payload)
        except WireError as exc:
            return [Rejected(offset, -1, exc.reason, exc.detail)]
        self.nbytes += 4 * len(payload)  # decoded rows take a few times their msgpack size
        rejects = []
        for index, execution in enumerate(batch.executions):
            try:
                self._add(execution)
                self.events += 1
            except (ValueError, TypeError, OverflowError, OSError) as exc:
                rejects.append(Rejected(offset, index, "bad_execution", str(exc)[:200]))
        return rejects

    def _add(self, e: Execution) -> None:
        if not e.id or len(e.id) > 64:
            raise ValueError(f"bad execution id {e.id[:80]!r}")
        started = _time(e.started_us)
        rows = self._rows
        executions = (
            e.id, e.parent_id, e.ref, e.job, e.tenant, e.key, e.state, e.code, e.error,
            min(max(e.attempt, 0), 65535), started, max(e.duration_us, 0), dict(e.tags),
            e.sampled, len(e.lines), min(max(e.dropped, 0), MAX_U32),
            e.message, e.traceback, _started_args(e), e.hook_key,
        )  # fmt: skip
        lines = [
            (
                e.id,
                started,
                line.seq,
                line.parent,
                min(line.depth, 65535),
                line.kind,
                line.name,
                max(line.offset_us, 0),
                max(line.duration_us, 0),
                line.outcome,
                line.text,
                bool(line.truncated),
                min(max(line.size, 0), MAX_U32),
            )
            for line in e.lines
        ]
        log = [
            (
                _time(event.at_us),
                "" if event.event == "enqueued" else e.id,
                e.id if event.event == "enqueued" else e.parent_id,
                event.ref or (e.ref if event.event != "enqueued" else ""),
                event.job,
                e.tenant,
                e.key,
                event.event,
                "" if event.event == "enqueued" else e.state,
                min(max(event.attempt, 0), 65535),
                event.args,
                event.detail,
                {} if event.event == "enqueued" else dict(e.tags),
            )
            for event in e.events
        ]
        rows.executions.append(executions)
        rows.lines.extend(lines)
        rows.job_log.extend(log)

    def rows(self) -> TraceRows:
        """Everything folded since the last ``clear``."""
        return self._rows

    def clear(self) -> None:
        """Forget the rows (after a durable flush)."""
        self._rows = TraceRows()
        self.events = 0
        self.nbytes = 0
