"""The trace writer: consumes ``tally.traces`` into ClickHouse, exactly once.

It is ``tally.engine`` configured with a trace fold and a trace sink: per partition, a flush
commits its intent (``tally1:start:end``) as Kafka commit metadata, inserts each table under
``insert_deduplication_token = topic:partition:start-end/<table>``, then commits ``end + 1``.
After a kill -9 the next owner replays exactly the pending range under the same tokens, so
ClickHouse keeps one copy of every row and loses none. An insert ClickHouse keeps rejecting
is isolated by the engine (halving by offsets, re-read, re-folded with a trace fold,
dead-lettering single records it still rejects).
"""

from __future__ import annotations

from tally.engine.loop import Engine
from tally.engine.metrics import EngineMetrics
from tally.engine.settings import ConsumerSettings
from tally.traces.ddl import TraceSchema
from tally.traces.fold import TraceFold, TraceRows
from tally.traces.sink import TraceSink


def new_trace_fold(*, reread: bool = False) -> TraceFold:
    """The trace ``FoldFactory``: owned partitions and re-read ranges fold alike."""
    return TraceFold()


def build_trace_writer(
    settings: ConsumerSettings, schema: TraceSchema, metrics: EngineMetrics | None = None
) -> Engine[TraceRows]:
    """One trace writer process (a member of its own consumer group)."""
    return Engine(settings, TraceSink(settings.clickhouse, schema), new_trace_fold, metrics)
