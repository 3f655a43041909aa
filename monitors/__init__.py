"""Evaluate rules over the rollups on durable buckets; notify each change exactly once."""
