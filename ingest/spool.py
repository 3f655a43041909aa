"""A bounded on-disk spool for encoded records that the broker could not take.

Each process owns one subdirectory of ``spool_dir`` (held with an advisory ``flock``), so
prefork workers never share files. On start a process adopts subdirectories whose owner is
gone, so records spooled by a crashed or killed process are delivered by its successor.
Records are files written atomically (temp file, fsync, rename) and replayed oldest first.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path

_HEADER = struct.Struct(">I")  # partition


@dataclass(frozen=True, slots=True)
class SpooledRecord:
    """One record waiting in the spool."""

    path: Path
    partition: int
    payload: bytes


class Spool:
    """Owns ``root/<owner>/`` and keeps its total size under ``max_bytes``."""

    def __init__(self, root: Path, owner: str, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.dir = root / owner.replace("/", "_").replace(":", "_")
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.dir / ".lock", os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._seq = 0
        self.adopt_orphans()
        self.size = sum(p.stat().st_size for p in self._files())

    def adopt_orphans(self) -> int:
        """Move records of sibling spools whose owner no longer holds its lock; return count."""
        moved = 0
        for sibling in self.root.iterdir():
            if sibling == self.dir or not sibling.is_dir():
                continue
            fd = os.open(sibling / ".lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                for path in sorted(sibling.glob("*.rec")):
                    path.rename(self.dir / path.name)
                    moved += 1
                for leftover in sibling.iterdir():
                    leftover.unlink()
                sibling.rmdir()
            finally:
                os.close(fd)
        return moved

    def put(self, partition: int, payload: bytes) -> bool:
        """Write one record; False (nothing written) when it would exceed ``max_bytes``."""
        size = len(payload) + _HEADER.size
        if self.size + size > self.max_bytes:
            return False
        self._seq += 1
        name = f"{os.getpid()}-{self._seq:012d}-{os.urandom(3).hex()}"
        tmp = self.dir / f".{name}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(_HEADER.pack(partition))
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.rename(self.dir / f"{time.time_ns():020d}-{name}.rec")
        self.size += size
        return True

    def peek(self, limit: int) -> list[SpooledRecord]:
        """Up to ``limit`` oldest records, not removed until ``remove`` is called."""
        records = []
        for path in self._files()[:limit]:
            data = path.read_bytes()
            (partition,) = _HEADER.unpack_from(data)
            records.append(SpooledRecord(path, partition, data[_HEADER.size :]))
        return records

    def remove(self, record: SpooledRecord) -> None:
        """Delete a record once the broker acknowledged it."""
        with contextlib.suppress(FileNotFoundError):
            record.path.unlink()
        self.size = max(0, self.size - len(record.payload) - _HEADER.size)

    def __len__(self) -> int:
        return len(self._files())

    def close(self) -> None:
        """Release the directory lock (records stay for the next owner)."""
        os.close(self._lock_fd)

    def _files(self) -> list[Path]:
        return sorted(self.dir.glob("*.rec"))
