"""The aggregator's own Prometheus metrics, on a registry it owns (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class AggregatorMetrics:
    """Counters, gauges and histograms for one aggregator process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.records_in = Counter("tally_records_in", "Kafka records consumed", registry=r)
        self.events_in = Counter("tally_events_in", "Valid events folded", registry=r)
        self.dead_letters = Counter(
            "tally_dead_letters", "Records or events dead-lettered", ["reason"], registry=r
        )
        self.rows_out = Counter(
            "tally_rows_out", "Folded rows inserted (before ClickHouse fans them out)", registry=r
        )
        self.flushes = Counter("tally_flushes", "Partition flushes inserted", registry=r)
        self.flush_seconds = Histogram(
            "tally_flush_seconds",
            "Time from intent commit to done commit",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.insert_retries = Counter(
            "tally_insert_retries", "ClickHouse insert attempts that failed", ["kind"], registry=r
        )
        self.commit_failures = Counter(
            "tally_commit_failures", "Offset commits that failed", ["phase"], registry=r
        )
        self.replays = Counter("tally_replays", "Pending intents replayed", registry=r)
        self.lag = Gauge(
            "tally_consumer_lag", "High watermark minus position", ["partition"], registry=r
        )
        self.fold_entries = Gauge("tally_fold_entries", "Entries held in memory", registry=r)
        self.assigned = Gauge("tally_assigned_partitions", "Partitions owned", registry=r)
        self.expired_on_arrival = Counter(
            "tally_expired_on_arrival",
            "Events accepted but older than a granularity's TTL (ClickHouse drops them there)",
            ["granularity"],
            registry=r,
        )

    def serve(self, port: int, host: str = "0.0.0.0") -> None:
        """Expose ``/metrics`` on ``port`` (0 picks a free port)."""
        start_http_server(port, addr=host, registry=self.registry)
