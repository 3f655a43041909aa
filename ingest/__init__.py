"""Thin client: ``Tracker.track(keys, values, at)`` enqueues; a background thread ships to Kafka."""

from tally.ingest.flatten import InvalidValues, flatten
from tally.ingest.settings import ClientSettings
from tally.ingest.stats import TrackerStats
from tally.ingest.tracker import Tracker

__all__ = ["ClientSettings", "InvalidValues", "Tracker", "TrackerStats", "flatten"]
