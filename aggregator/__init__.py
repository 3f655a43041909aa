"""The consumer service: Kafka records folded per bucket, flushed exactly once to ClickHouse."""
