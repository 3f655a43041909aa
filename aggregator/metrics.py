"""The rollup aggregator's metrics: the engine's, plus events expired on arrival."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from tally.engine.metrics import EngineMetrics, MetricsPortInUse

__all__ = ["AggregatorMetrics", "MetricsPortInUse"]


class AggregatorMetrics(EngineMetrics):
    """The engine's counters and gauges, plus ``tally_expired_on_arrival{granularity}``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        self.expired_on_arrival = Counter(
            "tally_expired_on_arrival",
            "Events accepted but older than a granularity's TTL (ClickHouse drops them there)",
            ["granularity"],
            registry=self.registry,
        )
