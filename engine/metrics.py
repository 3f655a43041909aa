"""The engine's Prometheus metrics, on a registry it owns (no global state)."""

from __future__ import annotations

import errno

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class EngineMetrics:
    """Counters, gauges and histograms for one engine process (aggregator or trace writer)."""

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
        self.commits = Counter(
            "tally_commits", "Offset commits made (intent, done)", ["phase"], registry=r
        )
        self.replays = Counter("tally_replays", "Pending intents replayed", registry=r)
        self.group_inserts = Counter(
            "tally_group_inserts",
            "Combined inserts (several partitions' ranges under one token), first or replayed",
            ["phase"],
            registry=r,
        )
        self.group_members = Histogram(
            "tally_group_members",
            "Partitions per combined insert",
            buckets=(2, 4, 8, 16, 32, 64, 128),
            registry=r,
        )
        self.rejected_ranges = Counter(
            "tally_rejected_ranges",
            "Ranges whose insert ClickHouse kept rejecting, isolated record by record",
            registry=r,
        )
        self.offset_resets = Counter(
            "tally_offset_resets",
            "Ranges restarted because the committed offset was beyond the log",
            registry=r,
        )
        self.lag = Gauge(
            "tally_consumer_lag",
            "Kafka records not yet committed: high watermark minus the committed offset",
            ["partition"],
            registry=r,
        )
        self.lag_seconds = Gauge(
            "tally_consumer_lag_seconds",
            "How far behind the partition is in time: age of the newest record fetched while "
            "records are left (0 when caught up)",
            ["partition"],
            registry=r,
        )
        self.fold_entries = Gauge("tally_fold_entries", "Entries held in memory", registry=r)
        self.fold_bytes = Gauge(
            "tally_fold_bytes",
            "Estimated bytes held by the folds and unacknowledged dead letters",
            registry=r,
        )
        self.assigned = Gauge("tally_assigned_partitions", "Partitions owned", registry=r)
        self.flush_interval = Gauge(
            "tally_flush_interval_seconds",
            "Effective seconds between two flushes of one partition (the configured interval,"
            " stretched by the insert ceiling and parts pressure)",
            registry=r,
        )
        self.parts_active_max = Gauge(
            "tally_parts_active_max",
            "Active parts in the fullest partition of the written tables (last reading)",
            registry=r,
        )
        self.parts_pressure = Gauge(
            "tally_parts_pressure",
            "Active parts in the fullest partition over parts_to_delay_insert (1: inserts delayed)",
            registry=r,
        )
        self.merges_running = Gauge(
            "tally_merges_running", "Merges in flight on the written tables", registry=r
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
