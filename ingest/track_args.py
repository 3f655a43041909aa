"""The types of ``track``'s arguments, named once for the tracker, the job hooks' ``Trackable``
protocol and the recorders tests and forked horses use in its place."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TypeAlias

Keys: TypeAlias = str | Iterable[str]  # one key, or the keys an event fans out to
Values: TypeAlias = Mapping[str, object]  # nested numbers (and dist()/gauge() values)
When: TypeAlias = datetime | float | None  # an aware datetime, unix seconds, or None: now
