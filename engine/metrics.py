"""The engine's Prometheus metrics, on a registry it owns (no global state)."""

from __future__ import annotations

import errno

from prometheus_client import CollectorRegistry, start_http_server

from tally.engine.metric_factory import MetricFactory


class EngineMetrics:
    """Counters, gauges and histograms for one engine process (aggregator or trace writer)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        m = MetricFactory(self.registry)
        self.records_in = m.counter("tally_records_in", "Kafka records consumed")
        self.events_in = m.counter("tally_events_in", "Valid events folded")
        self.dead_letters = m.counter(
            "tally_dead_letters", "Records or events dead-lettered", ["reason"]
        )
        self.rows_out = m.counter(
            "tally_rows_out", "Folded rows inserted (before ClickHouse fans them out)"
        )
        self.flushes = m.counter("tally_flushes", "Partition flushes inserted")
        self.flush_seconds = m.histogram(
            "tally_flush_seconds",
            "Time from intent commit to done commit",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.insert_retries = m.counter(
            "tally_insert_retries", "ClickHouse insert attempts that failed", ["kind"]
        )
        self.commit_failures = m.counter(
            "tally_commit_failures", "Offset commits that failed", ["phase"]
        )
        self.commits = m.counter("tally_commits", "Offset commits made (intent, done)", ["phase"])
        self.replays = m.counter("tally_replays", "Pending intents replayed")
        self.group_inserts = m.counter(
            "tally_group_inserts",
            "Combined inserts (several partitions' ranges under one token), first or replayed",
            ["phase"],
        )
        self.group_members = m.histogram(
            "tally_group_members",
            "Partitions per combined insert",
            buckets=(2, 4, 8, 16, 32, 64, 128),
        )
        self.rejected_ranges = m.counter(
            "tally_rejected_ranges",
            "Ranges whose insert ClickHouse kept rejecting, isolated record by record",
        )
        self.offset_resets = m.counter(
            "tally_offset_resets",
            "Ranges restarted because the committed offset was beyond the log",
        )
        self.lag = m.gauge(
            "tally_consumer_lag",
            "Kafka records not yet committed: high watermark minus the committed offset",
            ["partition"],
        )
        self.lag_seconds = m.gauge(
            "tally_consumer_lag_seconds",
            "How far behind the partition is in time: age of the newest record fetched while "
            "records are left (0 when caught up)",
            ["partition"],
        )
        self.fold_entries = m.gauge("tally_fold_entries", "Entries held in memory")
        self.fold_bytes = m.gauge(
            "tally_fold_bytes",
            "Estimated bytes held by the folds and unacknowledged dead letters",
        )
        self.assigned = m.gauge("tally_assigned_partitions", "Partitions owned")
        self.flush_interval = m.gauge(
            "tally_flush_interval_seconds",
            "Effective seconds between two flushes of one partition (the configured interval,"
            " stretched by the insert ceiling and parts pressure)",
        )
        self.parts_active_max = m.gauge(
            "tally_parts_active_max",
            "Active parts in the fullest partition of the written tables (last reading)",
        )
        self.parts_pressure = m.gauge(
            "tally_parts_pressure",
            "Active parts in the fullest partition over parts_to_delay_insert (1: inserts delayed)",
        )
        self.merges_running = m.gauge(
            "tally_merges_running", "Merges in flight on the written tables"
        )

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Expose ``/metrics`` on ``host:port`` (port 0 picks a free one); returns the port.

        Raises ``MetricsPortInUse`` (one clear line) if another process holds the port.
        """
        try:
            server, _thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise MetricsPortInUse(
                    f"metrics port {host}:{port} is already in use (another aggregator on this"
                    " host?): pass --metrics-port 0 for a free port, or another port"
                ) from None
            raise
        return server.server_address[1]


class MetricsPortInUse(RuntimeError):
    """The metrics port is taken."""
