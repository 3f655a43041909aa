"""What the browser tests of the UI pages share: the embedded ClickHouse seeded with the jobs
history (``dashboard_seed``), Debian's chromium (Playwright) signed in to a local API, and a
probe of a canvas's pixels."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tally.embedded.clickhouse.process import EmbeddedClickHouse
from tally.schemas.ddl import RollupSchema
from tests.integration.dashboard_seed import seed
from tests.integration.readside import apply_schema, start

CHROMIUM = os.environ.get("TALLY_CHROMIUM", "/usr/bin/chromium")
# One pixel's RGBA at (x, y) of a canvas; or, given a colour ("#rrggbb"), how many pixels of
# the box (x, y, w, h) are within a small distance of it.
PROBE = """([selector, x, y, w, h, colour]) => {
  const px = document.querySelector(selector).getContext("2d").getImageData(
    Math.round(x), Math.round(y), Math.max(1, Math.round(w)), Math.max(1, Math.round(h))).data;
  if (!colour) return Array.from(px.slice(0, 4));
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(colour.slice(i, i + 2), 16));
  let n = 0;
  for (let i = 0; i < px.length; i += 4) {
    const off = Math.abs(px[i] - r) + Math.abs(px[i + 1] - g) + Math.abs(px[i + 2] - b);
    if (px[i + 3] > 0 && off < 60) n++;
  }
  return n;
}"""


@contextmanager
def seeded_clickhouse(
    root: Path, days: int, tenants: int
) -> Iterator[tuple[EmbeddedClickHouse, list[str]]]:
    """ClickHouse under ``root`` with the rollup schema and ``seed``'s history (and tenants)."""
    clickhouse = start(root / "clickhouse")
    try:
        apply_schema(clickhouse, RollupSchema(database="tally"))
        yield clickhouse, seed(clickhouse, "tally", days=days, tenants=tenants)
    finally:
        clickhouse.stop()


@contextmanager
def chromium(width: int = 1440, height: int = 900) -> Iterator[Any]:
    """A Playwright browser context of Debian's chromium (closed on exit)."""
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make system-deps` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser.new_context(viewport={"width": width, "height": height})
        finally:
            browser.close()


def sign_in(context: Any, url: str, token: str, path: str = "/ui/d/jobs") -> None:
    """Open ``path`` without a cookie (the login form), sign in with ``token``, land there."""
    page = context.new_page()
    page.goto(url + path)
    assert "/ui/login" in page.url  # no cookie yet: the login form
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url("**" + path)
    page.close()


def pixel(page: Any, canvas: str, x: float, y: float) -> list[int]:
    """RGBA of one pixel of the canvas ``canvas`` (a CSS selector)."""
    return page.evaluate(PROBE, [canvas, x, y, 1, 1, ""])


def inked(page: Any, canvas: str, box: list[float], colour: str) -> int:
    """How many pixels of ``box`` (x, y, w, h) of the canvas are near ``colour``."""
    return page.evaluate(PROBE, [canvas, *box, colour])
