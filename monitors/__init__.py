"""Monitors: rules over the rollups, evaluated on durable buckets, notified exactly once."""
