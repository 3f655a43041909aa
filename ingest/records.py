"""The metrics' buffered records: what ``Tracker.track`` hands to the outbox.

msgspec Structs with ``gc=False``: created positionally on the caller's thread, they cost
about as much as the tuples they replace (a Python ``__slots__`` class costs several times
more). The record's type picks the wire version: ``MetricRecord`` encodes as ``BatchV1``, a
chunk with any ``KindsRecord`` as ``BatchV2``.
"""

from __future__ import annotations

import msgspec

from tally.ingest.flatten import Kinds


class MetricRecord(msgspec.Struct, gc=False):
    """One event of summed values: unix seconds, keys, flattened paths and their numbers."""

    at: int
    keys: tuple[str, ...]
    paths: tuple[str, ...]
    values: list[int | float]
    route: str


class KindsRecord(MetricRecord, gc=False):
    """A ``MetricRecord`` that also carries distributions and gauges (``flatten_all``'s kinds)."""

    kinds: Kinds
