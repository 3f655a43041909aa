"""Scheduled digests: per item, the period's total, mean per bucket, change against the
previous period and a PNG chart (matplotlib, Agg backend); sent to webhook (JSON with base64
PNGs) or email (PNGs attached), or written to a directory.

A daily report covers the last complete day in hourly buckets; a weekly one the last seven
complete days in daily buckets. The service sends each report once per period, right after the
period's last bucket is durable; ``monitor_reports`` in ClickHouse records what was sent, so a
restart does not send a digest twice.
"""

from __future__ import annotations

import base64
import io
import math
import smtplib
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import aiohttp

from tally.monitors.engine import iso
from tally.monitors.spec import Channel, Report
from tally.read import AsyncReader
from tally.read.settings import ReadSettings


@dataclass(frozen=True)
class ItemResult:
    """One item of a digest."""

    title: str
    key: str
    what: str
    buckets: list[int]
    points: list[float | None]
    total: float
    previous_total: float
    png: bytes

    @property
    def change(self) -> float | None:
        if self.previous_total == 0:
            return None
        return (self.total - self.previous_total) / abs(self.previous_total)


@dataclass(frozen=True)
class Digest:
    """A built report: period, items and their charts."""

    name: str
    start: int
    end: int
    items: list[ItemResult]

    def text(self) -> str:
        lines = [f"tally report {self.name}: {iso(self.start)} .. {iso(self.end)}", ""]
        for item in self.items:
            change = "n/a" if item.change is None else f"{item.change:+.1%}"
            previous = f"previous period {item.previous_total:.6g}, {change}"
            lines.append(f"{item.title}: {item.total:.6g} ({previous})")
        return "\n".join(lines)


def period(report: Report, now: float) -> tuple[int, int]:
    """The last complete period ``[start, end)`` in UTC days."""
    day = int(now) - int(now) % 86_400
    length = 86_400 if report.every == "1d" else 7 * 86_400
    return day - length, day


def chart(title: str, buckets: list[int], points: list[float | None]) -> bytes:
    """A small line chart as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.4), dpi=100)
    try:
        xs = [datetime.fromtimestamp(b, UTC) for b in buckets]
        ys = [math.nan if p is None else p for p in points]
        ax.plot(xs, ys, color="#2563eb", linewidth=1.5)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        fig.autofmt_xdate()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()
    finally:
        plt.close(fig)


def _sum(points: list[float | None]) -> float:
    return math.fsum(p for p in points if p is not None)


async def build(reader: AsyncReader, report: Report, now: float) -> Digest:
    """Read every item for the period and the previous one; draw the charts."""
    start, end = period(report, now)
    length = end - start
    g = str(report.granularity)
    items = []
    for item in report.items:
        paths = [item.path] if item.path else []
        expressions = [item.expression] if item.expression else []
        current = await reader.series(item.key, paths, expressions, start, end, g)
        previous = await reader.series(item.key, paths, expressions, start - length, start, g)
        points = current.rows[0].points if current.rows else []
        before = previous.rows[0].points if previous.rows else []
        items.append(
            ItemResult(
                item.title,
                item.key,
                item.path or item.expression,
                current.buckets,
                points,
                _sum(points),
                _sum(before),
                chart(item.title, current.buckets, points),
            )
        )
    return Digest(report.name, start, end, items)


def webhook_body(d: Digest) -> dict:
    """JSON for a webhook: the text, numbers and base64 PNGs."""
    return {
        "report": d.name, "from": iso(d.start), "to": iso(d.end), "text": d.text(),
        "items": [
            {"title": i.title, "key": i.key, "what": i.what, "total": i.total,
             "previous_total": i.previous_total, "change": i.change,
             "png_base64": base64.b64encode(i.png).decode()}
            for i in d.items
        ],
    }  # fmt: skip


def email(d: Digest, channel: Channel) -> EmailMessage:
    """A text email with one PNG attachment per item."""
    message = EmailMessage()
    message["Subject"] = f"tally report {d.name} {iso(d.start)[:10]}"
    message["From"] = channel.sender
    message["To"] = ", ".join(channel.to)
    message.set_content(d.text())
    for n, item in enumerate(d.items, 1):
        message.add_attachment(item.png, maintype="image", subtype="png", filename=f"{n}.png")
    return message


async def send(d: Digest, channel: Channel, env: dict[str, str]) -> None:
    """Deliver one digest to one channel (raises on failure)."""
    import asyncio

    if channel.type in ("webhook", "slack"):
        url = env.get(channel.url_env, "") if channel.url_env else channel.url
        body = webhook_body(d) if channel.type == "webhook" else {"text": d.text()}
        timeout = aiohttp.ClientTimeout(total=30)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(url, json=body) as response,
        ):
            if response.status >= 300:
                raise RuntimeError(f"channel {channel.name}: HTTP {response.status}")
    elif channel.type == "email":

        def deliver() -> None:
            with smtplib.SMTP(channel.host, channel.port, timeout=30) as smtp:
                if channel.starttls:
                    smtp.starttls()
                if channel.username:
                    smtp.login(channel.username, env.get(channel.password_env, ""))
                smtp.send_message(email(d, channel))

        await asyncio.to_thread(deliver)


def write(digest: Digest, out: Path) -> None:
    """The digest's text and PNGs into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{digest.name}.txt").write_text(digest.text())
    for n, item in enumerate(digest.items, 1):
        (out / f"{digest.name}-{n}.png").write_bytes(item.png)


async def send_reports(
    settings: ReadSettings,
    channels: dict[str, Channel],
    reports: list[Report],
    base_url: str = "",
    out: Path | None = None,
    now: float | None = None,
) -> list[str]:
    """Build and send ``reports`` now; returns one line per delivery."""
    import os
    import time

    now = time.time() if now is None else now
    lines = []
    async with AsyncReader(settings) as reader:
        for report in reports:
            digest = await build(reader, report, now)
            if out is not None:
                write(digest, out)
            for name in report.notify:
                if name == "log" or name not in channels:
                    lines.append(digest.text())
                    continue
                await send(digest, channels[name], dict(os.environ))
                lines.append(f"sent {report.name} to {name}")
    return lines
