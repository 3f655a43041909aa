"""A bounded on-disk spool for encoded records that the broker could not take.

Each process owns one subdirectory of ``spool_dir`` (held with an advisory ``flock``), so
prefork workers never share files; a process whose preferred name is taken (a forked sibling,
a second process with the same ``source``) picks a unique one. On start a process adopts
subdirectories whose owner is gone, so records spooled by a crashed or killed process are
delivered by its successor.

A record is one file, written atomically (temp file, fsync, rename) and named
``<born>-<unique>.rec``: ``born`` is when the record was made (unix ns), so the sender can
replay spooled and in-memory records together in order of arrival. A record is rewritten as
several (re-routed or split) by writing ``<stem>~<k>.rec`` files before deleting the
original; if the process dies in between, the next owner deletes the partial pieces and
redoes it, so no event is sent twice. Files that cannot be read as records are moved to
``<spool_dir>/.quarantine`` (as ``*.bad``) and counted, never retried forever.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("tally.ingest")

_HEADER = struct.Struct(">I")  # partition
QUARANTINE = ".quarantine"


@dataclass(frozen=True, slots=True)
class SpooledRecord:
    """One record waiting in the spool."""

    path: Path
    partition: int
    payload: bytes
    born: int


class Spool:
    """Owns ``root/<owner>/`` and keeps its total size under ``max_bytes``."""

    def __init__(self, root: Path, owner: str, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.quarantined = 0  # files moved aside since the last ``take_quarantined``
        self._seq = 0
        root.mkdir(parents=True, exist_ok=True)
        name = owner.replace("/", "_").replace(":", "_").lstrip(".") or "spool"
        self.dir, self._lock_fd = _claim(root, name)
        self.adopt_orphans()
        self._names = sorted(p.name for p in self.dir.glob("*.rec"))
        self._drop_partial_rewrites()
        self.size = sum(self._size_of(n) for n in self._names)

    def adopt_orphans(self) -> int:
        """Move records of sibling spools whose owner no longer holds its lock; return count."""
        moved = 0
        for sibling in self.root.iterdir():
            if sibling == self.dir or not sibling.is_dir() or sibling.name.startswith("."):
                continue
            try:
                fd = os.open(sibling / ".lock", os.O_CREAT | os.O_RDWR, 0o600)
            except OSError:
                continue
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

    def put(self, partition: int, payload: bytes, born: int, stem: str | None = None) -> bool:
        """Write one record; False (nothing written) when it would exceed ``max_bytes``.

        ``stem`` (a rewrite of an existing record) names the file ``<stem>.rec`` and is
        written even past ``max_bytes``: it replaces a record of about the same size.
        """
        size = len(payload) + _HEADER.size
        if stem is None and self.size + size > self.max_bytes:
            return False
        self._seq += 1
        unique = f"{os.getpid()}-{self._seq:012d}-{os.urandom(3).hex()}"
        name = f"{stem}.rec" if stem else f"{born:020d}-{unique}.rec"
        tmp = self.dir / f".{unique}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(_HEADER.pack(partition))
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.rename(self.dir / name)
        bisect.insort(self._names, name)
        self.size += size
        return True

    def peek(self, limit: int) -> list[SpooledRecord]:
        """Up to ``limit`` oldest records, not removed until ``remove`` is called.

        Unreadable files (no header, a bad name) are quarantined and skipped.
        """
        records: list[SpooledRecord] = []
        for name in list(self._names[:limit]):
            path = self.dir / name
            try:
                data = path.read_bytes()
                born = int(name.split("-", 1)[0])
                (partition,) = _HEADER.unpack_from(data)
            except FileNotFoundError:
                self._forget(name, 0)
                continue
            except (OSError, ValueError, struct.error) as exc:
                self.quarantine(path, f"unreadable spool file ({exc})")
                continue
            records.append(SpooledRecord(path, partition, data[_HEADER.size :], born))
        return records

    def remove(self, record: SpooledRecord) -> None:
        """Delete a record once the broker acknowledged it."""
        with contextlib.suppress(FileNotFoundError):
            record.path.unlink()
        self._forget(record.path.name, len(record.payload) + _HEADER.size)

    def replace(self, record: SpooledRecord, pieces: list[tuple[int, bytes]]) -> None:
        """Rewrite ``record`` as ``pieces`` (partition, payload), same age; crash-safe."""
        stem = record.path.name.removesuffix(".rec")
        for index, (partition, payload) in enumerate(pieces):
            self.put(partition, payload, record.born, stem=f"{stem}~{index:04d}")
        self.remove(record)

    def quarantine(self, path: Path, why: str) -> None:
        """Move an unusable file to ``root/.quarantine`` (kept for inspection) and count it."""
        target = self.root / QUARANTINE
        target.mkdir(exist_ok=True)
        size = 0
        with contextlib.suppress(OSError):
            size = path.stat().st_size
        try:
            path.rename(target / f"{self.dir.name}-{path.name}.bad")
        except FileNotFoundError:
            pass
        except OSError:
            with contextlib.suppress(OSError):
                path.unlink()
        self._forget(path.name, size)
        self.quarantined += 1
        log.error("tally: spool file %s quarantined: %s", path.name, why)

    def take_quarantined(self) -> int:
        """Files quarantined since the last call."""
        count, self.quarantined = self.quarantined, 0
        return count

    def __len__(self) -> int:
        return len(self._names)

    def close(self) -> None:
        """Release the directory lock (records stay for the next owner)."""
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)

    def forget_after_fork(self) -> None:
        """In a forked child: drop the inherited lock descriptor, leave the parent's lock."""
        self.close()

    def _forget(self, name: str, size: int) -> None:
        index = bisect.bisect_left(self._names, name)
        if index < len(self._names) and self._names[index] == name:
            del self._names[index]
            self.size = max(0, self.size - size)

    def _drop_partial_rewrites(self) -> None:
        """Pieces of a rewrite that died before deleting the original: the original wins."""
        present = set(self._names)
        for name in list(self._names):
            stem = name.removesuffix(".rec")
            if "~" in stem and f"{stem.rsplit('~', 1)[0]}.rec" in present:
                with contextlib.suppress(FileNotFoundError):
                    (self.dir / name).unlink()
                self._names.remove(name)

    def _size_of(self, name: str) -> int:
        try:
            return (self.dir / name).stat().st_size
        except FileNotFoundError:
            return 0


def _claim(root: Path, name: str) -> tuple[Path, int]:
    """Lock ``root/name``, or a unique variant when another live process holds it."""
    candidates = [name, f"{name}-{os.getpid()}-{os.urandom(4).hex()}"]
    for candidate in candidates:
        directory = root / candidate
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / ".lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return directory, fd
    raise RuntimeError(f"cannot lock a spool directory under {root}")
