"""``tally monitors list`` shows effective durations (window, idle time, ``for``, when it alerts),
and the ready-made monitors' documented example means what it says."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tally.monitors import ready
from tally.monitors.engine import advance
from tally.monitors.evaluate import frames
from tally.monitors.listing import describe
from tally.monitors.loader import load_text
from tally.monitors.source import Fetched
from tally.monitors.spec import Zero

IDLE = "ready:\n  - scheduler_idle: {job: j, idle_for: 30m, for: 30m}\n"
T0 = 1_700_000_040 - 1_700_000_040 % 60


def list_(path: Path, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "tally.cli", "monitors", "list", str(path), *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_docstring_example_idles_30_minutes_with_no_extra_pending_time() -> None:
    block = re.search(r"\n    ready:\n(?:      .*\n)+", ready.__doc__ or "")
    assert block is not None
    text = "\n".join(line[4:] for line in block.group(0).strip("\n").splitlines())
    loaded = load_text(text, "doc.yaml")
    assert loaded.errors == ()
    idle = next(m for m in loaded.monitors if m.name.startswith("scheduler-idle"))
    assert isinstance(idle.condition, Zero) and idle.condition.buckets == 30
    assert idle.for_s == 0
    assert describe(loaded)[1].alerts_after_s == 30 * 60


def test_list_shows_the_effective_durations(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(IDLE)
    out = list_(tmp_path / "m.yaml")
    assert "    window 1m, idle 30m, for 30m, alerts after 59m" in out.splitlines()
    (info,) = json.loads(list_(tmp_path / "m.yaml", "--json"))["monitors"]
    assert (info["condition_s"], info["for_s"], info["alerts_after_s"]) == (1800, 1800, 3540)


def first_firing(text: str, minutes: int = 120) -> tuple[int, int]:
    """(bucket index the engine fires at, listed alerts_after_s) for a scheduler that runs every
    minute and touches nothing from minute 0."""
    loaded = load_text(text, "m.yaml")
    (m,) = loaded.monitors
    buckets = [T0 + 60 * i for i in range(minutes)]
    runs, touched = dict.fromkeys(buckets, 1.0), dict.fromkeys(buckets, 0.0)
    grid = {"event::schedule::acme": {"jobs.j.count": runs, "jobs.j.resources": touched}}
    (notice, *_) = advance(m, frames(m, Fetched(buckets, grid)), {}, 0).notices
    return (notice.bucket - T0) // 60, describe(loaded)[0].alerts_after_s


def test_alerts_after_is_when_the_engine_fires() -> None:
    for text, minutes in ((IDLE, 59), (IDLE.replace(", for: 30m", ""), 30)):
        index, listed = first_firing(text)
        assert (index + 1, listed) == (minutes, minutes * 60)
