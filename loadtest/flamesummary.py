"""Read a py-spy flame graph (SVG) back into numbers: where the samples were spent.

Each frame of py-spy's SVG carries its sample offset and count (``fg:x``, ``fg:w``) and its
depth (``y``). A frame's self samples are its own minus its children's; its function's total
is the sum over frames with no ancestor of the same function (so recursion counts once).
"""

from __future__ import annotations

import bisect
import html
import re
from collections import defaultdict
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

_FRAME = re.compile(
    r'<g><title>(?P<title>[^<]*)</title><rect [^>]*?y="(?P<y>[\d.]+)"[^>]*?'
    r'fg:x="(?P<x>\d+)" fg:w="(?P<w>\d+)"'
)
_SAMPLES = re.compile(r"^(?P<name>.*) \([\d,]+ samples?, [\d.]+%\)$")


@dataclass(frozen=True)
class HotFrame:
    """A function with its self and inclusive share of all samples (percent)."""

    function: str
    self_pct: float
    total_pct: float


@dataclass
class _Frame:
    depth: int
    x: int
    w: int
    name: str
    parent: _Frame | None = None
    children_w: int = 0


def _frames(svg: Path) -> list[_Frame]:
    raw = []
    for m in _FRAME.finditer(svg.read_text()):
        found = _SAMPLES.match(html.unescape(m["title"]))
        if found is not None:
            raw.append((float(m["y"]), int(m["x"]), int(m["w"]), found["name"]))
    ys = sorted({y for y, *_ in raw})
    step = min((b - a for a, b in pairwise(ys)), default=16.0)
    # py-spy draws the root at the bottom or the top; depth counts away from the root.
    root_y = max(ys, key=lambda y: sum(w for yy, _, w, _ in raw if yy == y)) if ys else 0.0
    sign = 1 if root_y == ys[0] else -1
    return [_Frame(round(sign * (y - root_y) / step), x, w, n) for y, x, w, n in raw]


def summarize(svg: Path, top: int = 15) -> list[HotFrame]:
    """The ``top`` functions by self samples (inclusive share beside it)."""
    frames = _frames(svg)
    if not frames:
        return []
    by_depth: dict[int, list[_Frame]] = defaultdict(list)
    for f in frames:
        by_depth[f.depth].append(f)
    for level in by_depth.values():
        level.sort(key=lambda f: f.x)
    for f in frames:
        above = by_depth.get(f.depth - 1, [])
        i = bisect.bisect_right([p.x for p in above], f.x) - 1
        if i >= 0 and above[i].x <= f.x < above[i].x + above[i].w:
            f.parent = above[i]
            above[i].children_w += f.w
    total = max(f.w for f in frames)
    self_samples: dict[str, int] = defaultdict(int)
    inclusive: dict[str, int] = defaultdict(int)
    for f in frames:
        self_samples[f.name] += f.w - f.children_w
        ancestor = f.parent
        while ancestor is not None and ancestor.name != f.name:
            ancestor = ancestor.parent
        if ancestor is None:
            inclusive[f.name] += f.w
    ranked = sorted(self_samples.items(), key=lambda item: -item[1])[:top]
    return [
        HotFrame(name, round(100 * s / total, 2), round(100 * inclusive[name] / total, 2))
        for name, s in ranked
    ]
