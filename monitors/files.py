"""Definition files: which files a set of paths means, their text (UTF-8, or a
``file:line: reason``), and the set the service watches, re-reading a file only when it changed
since its last completed load attempt."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tally.monitors.spec import MonitorFile

log = logging.getLogger("tally.monitors")
Stamp = tuple[int, int]  # (mtime_ns, size) of the version read


class NotText(Exception):
    """Bytes that are not UTF-8: the ``line`` and ``reason`` of the first bad byte."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line = line
        self.reason = reason


def files_of(paths: Iterable[Path]) -> list[Path]:
    """Files as given and ``*.yaml``/``*.yml`` of directories, sorted per directory."""
    files: list[Path] = []
    for p in paths:
        files.extend(sorted([*p.glob("*.yaml"), *p.glob("*.yml")]) if p.is_dir() else [p])
    return files


def utf8(data: bytes) -> str:
    """``data`` as text, or :class:`NotText` naming the line and column of the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        reason = f"not UTF-8: byte 0x{data[exc.start]:02x} at column {column} (save it as UTF-8)"
        raise NotText(line, reason) from None


def read(path: Path) -> tuple[bytes, Stamp]:
    """The bytes of ``path`` and the stamp of the version read (taken from the open file, so it
    is never newer than the bytes); ``OSError`` if it cannot be read."""
    with path.open("rb") as f:
        st = os.fstat(f.fileno())
        return f.read(), (st.st_mtime_ns, st.st_size)


def load_file(path: Path, load: Callable[[str, str], MonitorFile]) -> MonitorFile:
    """One file's definitions; a file that cannot be read or decoded is one error."""
    try:
        data, _ = read(path)
        return load(utf8(data), str(path))
    except OSError as exc:
        return MonitorFile(errors=(f"{path}:0: cannot read: {exc.strerror or exc}",))
    except NotText as exc:
        return MonitorFile(errors=(f"{path}:{exc.line}: {exc.reason}",))


@dataclass
class WatchedFiles:
    """The files of ``paths``, each loaded by ``load`` and kept until its stamp changes.

    A file's stamp is recorded only for a completed load attempt (its result may hold
    ``file:line`` errors: the same version is not re-read until it changes). A file that could
    not be read, or whose loading raised, has no stamp and is tried again on the next look.
    """

    paths: list[Path]
    load: Callable[[str, str], MonitorFile]  # (text, file name) -> definitions
    stamps: dict[Path, Stamp] = field(default_factory=dict)
    loaded: dict[Path, MonitorFile] = field(default_factory=dict)

    def refresh(self) -> list[MonitorFile] | None:
        """Every file's definitions in order if any file changed, appeared or vanished; else
        None."""
        files = files_of(self.paths)
        changed = set(self.loaded) != set(files)
        for gone in set(self.loaded) - set(files):
            self.loaded.pop(gone)
            self.stamps.pop(gone, None)
        for f in files:
            if f in self.stamps and self.stamps[f] == _stat(f):
                continue
            before = self.loaded.get(f)
            self._load(f)
            changed = changed or self.loaded[f] != before
        return [self.loaded[f] for f in files] if changed else None

    def _load(self, f: Path) -> None:
        self.stamps.pop(f, None)
        try:
            data, stamp = read(f)
        except OSError as exc:  # no stamp: tried again next time
            self.loaded[f] = MonitorFile(errors=(f"{f}:0: cannot read: {exc.strerror}",))
            return
        try:
            self.loaded[f] = self.load(utf8(data), str(f))
        except NotText as exc:
            self.loaded[f] = MonitorFile(errors=(f"{f}:{exc.line}: {exc.reason}",))
        except Exception as exc:  # a loader bug costs this file only, and it is tried again
            log.exception("loading %s failed", f)
            self.loaded[f] = MonitorFile(errors=(f"{f}:0: cannot load: {exc}",))
            return
        self.stamps[f] = stamp


def _stat(path: Path) -> Stamp | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size
