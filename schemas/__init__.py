"""The contract between the stages: wire format, limits, time buckets, sketches, ClickHouse DDL."""
