"""Read a py-spy flame graph (SVG) back into numbers: where the samples were spent.

Each frame of py-spy's SVG carries its sample offset and count (``fg:x``, ``fg:w``) and its
depth (``y``). A frame's self samples are its own minus its children's; summed by function
they give the hot paths without opening the SVG.
"""

from __future__ import annotations

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


def summarize(svg: Path, top: int = 15) -> list[HotFrame]:
    """The ``top`` functions by self samples (inclusive share beside it)."""
    frames = []
    for m in _FRAME.finditer(svg.read_text()):
        name_match = _SAMPLES.match(html.unescape(m["title"]))
        if name_match is None:
            continue
        frames.append((float(m["y"]), int(m["x"]), int(m["w"]), name_match["name"]))
    if not frames:
        return []
    total = max(w for _, _, w, _ in frames)
    by_depth: dict[float, list[tuple[int, int]]] = defaultdict(list)
    for y, x, w, _ in frames:
        by_depth[y].append((x, w))
    depths = sorted(by_depth)
    step = min((b - a for a, b in pairwise(depths)), default=16.0)
    self_samples: dict[str, int] = defaultdict(int)
    inclusive: dict[str, int] = defaultdict(int)
    for y, x, w, name in frames:
        children = sum(cw for cx, cw in by_depth.get(y + step, []) if x <= cx < x + w)
        self_samples[name] += w - children
        inclusive[name] = max(inclusive[name], w)  # recursion: count the outermost once
    ranked = sorted(self_samples.items(), key=lambda item: -item[1])[:top]
    return [
        HotFrame(name, round(100 * s / total, 2), round(100 * inclusive[name] / total, 2))
        for name, s in ranked
    ]
