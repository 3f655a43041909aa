"""tally: business metrics from background jobs.

Data flow, one folder each: ``ingest`` (thin client) -> ``schemas`` (wire format, buckets,
DDL) -> ``aggregator`` (Kafka consumer group -> ClickHouse) -> ``rollups`` (SQL).
``embedded`` starts the real Kafka broker and ClickHouse engine locally; ``loadtest``
drives realistic workloads through all of it.
"""
