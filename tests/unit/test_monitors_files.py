"""Definition files that are not UTF-8 (monitors and dashboards): one ``file:line: reason`` for
that file, the other files load; the watched set re-reads a file only when it changes."""

from __future__ import annotations

import os
from pathlib import Path

from tally.monitors.files import WatchedFiles
from tally.monitors.loader import load_paths, load_text
from tally.web.loader import load_dir

GOOD = "monitors:\n  - {name: good, key: k, path: x, condition: {type: threshold, above: 1}}\n"
LATIN1 = (
    b"monitors:\n  - {name: other, key: k, path: x, condition: {type: threshold, above: 1}}\n"
    b"# caf\xe9 is Latin-1\n"
)
REASON = "not UTF-8: byte 0xe9 at column 6 (save it as UTF-8)"


def test_a_latin1_byte_is_file_line_reason_and_the_other_files_load(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_bytes(LATIN1)
    loaded = load_paths([tmp_path])
    assert [m.name for m in loaded.monitors] == ["good"]
    assert loaded.errors == (f"{tmp_path / 'b.yaml'}:3: {REASON}",)


def test_a_latin1_dashboard_is_file_line_reason_and_the_others_load(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text("title: G\nkey: k\nwidgets: []\n")
    (tmp_path / "bad.yaml").write_bytes(b"title: G\nkey: k\n# caf\xe9\nwidgets: []\n")
    loaded = load_dir(tmp_path)
    assert list(loaded.dashboards) == ["good"]
    (error,) = loaded.errors
    assert str(error) == f"{tmp_path / 'bad.yaml'}:3: not UTF-8: byte 0xe9 (save it as UTF-8)"


def test_a_file_is_read_again_only_when_it_changed_since_its_last_attempt(tmp_path: Path) -> None:
    bad = tmp_path / "b.yaml"
    (tmp_path / "a.yaml").write_text(GOOD)
    bad.write_bytes(LATIN1)
    watched = WatchedFiles([tmp_path], load_text)
    first = watched.refresh()
    assert first is not None and first[1].errors == (f"{bad}:3: {REASON}",)
    st = bad.stat()
    assert watched.stamps[bad] == (st.st_mtime_ns, st.st_size)  # the version that failed
    assert watched.refresh() is None  # unchanged: not re-read, its error stays
    bad.write_text(LATIN1.decode("latin-1").replace("caf\xe9", "cafe, now UTF-8"))
    os.utime(bad, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    again = watched.refresh()
    assert again is not None and [m.name for f in again for m in f.monitors] == ["good", "other"]
    st = bad.stat()
    assert watched.stamps[bad] == (st.st_mtime_ns, st.st_size)
    bad.unlink()
    gone = watched.refresh()
    assert gone is not None and len(gone) == 1 and bad not in watched.stamps
