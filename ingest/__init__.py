"""Thin client: ``Tracker.track(keys, values, at)`` enqueues; a background thread ships to Kafka."""

from tally.ingest.flatten import InvalidValues, flatten
from tally.ingest.kinds import Dist, Gauge, dist, gauge, heartbeat
from tally.ingest.settings import ClientSettings
from tally.ingest.stats import TrackerStats
from tally.ingest.tracker import Tracker

__all__ = [
    "ClientSettings",
    "Dist",
    "Gauge",
    "InvalidValues",
    "Tracker",
    "TrackerStats",
    "dist",
    "flatten",
    "gauge",
    "heartbeat",
]
