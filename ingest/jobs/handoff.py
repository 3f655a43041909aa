"""A forked work horse hands its events to the parent instead of sending them itself.

The parent creates one private, unlinked file before it forks (``Handoff``); in the horse a
``HandoffWriter`` stands in for the tracker and the trace shipper, appending each event (a
length-prefixed pickle) with one ``write`` (no broker, no thread, nothing lost at
``os._exit``). After the horse exits, the parent reads the file, truncates it and hands every
event to its own long-lived tracker and shipper (buffer appends; its sender thread ships them).
Only processes forked from this parent write to the file, so unpickling it is safe.
"""

from __future__ import annotations

import os
import pickle
import struct
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from tally.ingest.track_args import Keys, Values, When

_FRAME = struct.Struct(">I")
TRACK, SHIP = "track", "ship"


@dataclass(frozen=True, slots=True)
class HandoffWriter:
    """The horse's tracker and trace shipper: ``track`` and ``ship`` append to ``fd``."""

    fd: int

    def track(self, keys: Keys, values: Values, at: When = None, route: str | None = None) -> bool:
        """Append one event (stamped now, so the parent tracks it at the horse's time)."""
        keys = keys if isinstance(keys, str) else tuple(keys)
        return self._append((TRACK, keys, values, time.time() if at is None else at, route))

    def ship(self, execution: object) -> bool:
        """Append one finished execution (traces)."""
        return self._append((SHIP, execution))

    def _append(self, item: tuple) -> bool:
        data = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(_FRAME.pack(len(data)) + data)
        while view:
            view = view[os.write(self.fd, view) :]
        return True


class Handoff:
    """The parent's side: one private, unlinked file reused for every horse of a worker."""

    def __init__(self) -> None:
        fd, path = tempfile.mkstemp(prefix="tally-horse-")
        os.unlink(path)  # private to this process and the horses it forks
        self.fd = fd

    def writer(self) -> HandoffWriter:
        """What the horse tracks and ships through (call it in the horse)."""
        return HandoffWriter(self.fd)

    def drain(self) -> list[tuple]:
        """The events the last horse appended, and an empty file for the next one.

        A frame cut short (a horse killed while writing) is left out.
        """
        fd = self.fd
        size = os.fstat(fd).st_size
        raw = os.pread(fd, size, 0) if size else b""
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        items, at = [], 0
        while at + _FRAME.size <= len(raw):
            (length,) = _FRAME.unpack_from(raw, at)
            end = at + _FRAME.size + length
            if end > len(raw):
                break
            items.append(pickle.loads(raw[at + _FRAME.size : end]))
            at = end
        return items

    def close(self) -> None:
        """Close (and so delete) the file."""
        os.close(self.fd)


def replay(items: list[tuple], tracker: Any, shipper: Any) -> int:
    """Hand drained events to the parent's ``tracker`` and ``shipper``; how many were taken."""
    taken = 0
    for item in items:
        if item[0] == TRACK:
            _, keys, values, at, route = item
            taken += bool(tracker.track(keys, values, at, route))
        elif item[0] == SHIP and shipper is not None:
            taken += bool(shipper.ship(item[1]))
    return taken
