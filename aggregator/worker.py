"""The rollup aggregator: the exactly-once engine with the rollup fold and the rollup sink.

The loop, flush protocol, dead letters and isolation are ``tally.engine``'s; this module only
configures it: each owned partition folds events into minute sums (``fold.PartitionFold``,
counting events already past a granularity's TTL), and ``sink.RollupSink`` inserts them into
``rollups_input``, from which ClickHouse fans them out.
"""

from __future__ import annotations

from tally.aggregator.fold import PartitionFold
from tally.aggregator.metrics import AggregatorMetrics
from tally.aggregator.rows import FoldRows
from tally.aggregator.settings import AggregatorSettings
from tally.aggregator.sink import RollupSink
from tally.engine.loop import Engine
from tally.schemas.wire import BatchDecoder


class RollupFolds:
    """The rollup ``FoldFactory``: one decoder shared by every fold of the process."""

    def __init__(self, settings: AggregatorSettings, metrics: AggregatorMetrics) -> None:
        self.limits = settings.limits
        self.flush_rows = settings.flush_rows
        self.metrics = metrics
        self.decoder = BatchDecoder()

    def __call__(self, *, reread: bool = False) -> PartitionFold:
        """An empty fold; an owned partition's counts events that expired on arrival."""
        fold = PartitionFold(self.limits, self.decoder, self.flush_rows)
        if not reread:
            fold.on_expired = self.count_expired
        return fold

    def count_expired(self, granularity: str, n: int) -> None:
        """``tally_expired_on_arrival{granularity}`` += ``n``."""
        self.metrics.expired_on_arrival.labels(granularity).inc(n)


def build_aggregator(
    settings: AggregatorSettings, metrics: AggregatorMetrics | None = None
) -> Engine[FoldRows]:
    """One aggregator process: the engine over the rollup fold and the rollup sink."""
    metrics = metrics or AggregatorMetrics()
    sink = RollupSink(settings.clickhouse, settings.schema)
    return Engine(settings, sink, RollupFolds(settings, metrics), metrics)
