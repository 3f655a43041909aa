"""Deliver notices: Alertmanager v4 webhook, Slack-compatible incoming webhook, email over
SMTP, and the log. Deliveries retry with exponential backoff on connection errors, 429 and
5xx; a delivery that still fails is marked ``failed`` in the outbox and counted.

Secrets (webhook URLs with tokens, SMTP passwords) come from the environment variables the
channel names and never appear in logs or error messages.
"""

from __future__ import annotations

import asyncio
import logging
import os
import smtplib
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import aiohttp

from tally.monitors.channels import problem as channel_problem
from tally.monitors.channels import url_of
from tally.monitors.engine import Notice, iso
from tally.monitors.spec import Channel

log = logging.getLogger("tally.monitors.notify")
ZERO_TIME = "0001-01-01T00:00:00Z"


class DeliveryError(Exception):
    """A delivery that failed; ``retry`` says whether trying again may help."""

    def __init__(self, reason: str, retry: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry


def alertmanager_payload(n: Notice, receiver: str, external_url: str) -> dict[str, Any]:
    """The Alertmanager webhook body (``version`` "4") for one alert."""
    resolved = n.kind == "resolved"
    alert = {
        "status": n.status,
        "labels": n.labels,
        "annotations": {**n.annotations, "dashboard": n.url} if n.url else n.annotations,
        "startsAt": iso(n.since),
        "endsAt": iso(n.bucket) if resolved else ZERO_TIME,
        "generatorURL": n.url,
        "fingerprint": n.fingerprint,
    }
    group_labels = {"alertname": n.labels.get("alertname", n.monitor)}
    return {
        "version": "4",
        "groupKey": "{}:{alertname=%s}" % _quote(group_labels["alertname"]),  # noqa: UP031
        "truncatedAlerts": 0,
        "status": n.status,
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": n.labels,
        "commonAnnotations": alert["annotations"],
        "externalURL": external_url,
        "alerts": [alert],
    }


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def headline(n: Notice) -> str:
    """One line: status, monitor, segment and value."""
    word = {"firing": "FIRING", "repeat": "STILL FIRING", "resolved": "RESOLVED"}[n.kind]
    segment = f" [{n.segment}]" if n.segment else ""
    return f"[{word}] {n.monitor}{segment}"


def text_body(n: Notice) -> str:
    """The plain-text message (email, log)."""
    lines = [headline(n), ""]
    lines += [f"{k}: {v}" for k, v in sorted(n.annotations.items())]
    lines += [
        f"value: {'n/a' if n.value is None else f'{n.value:.6g}'}",
        f"bucket: {iso(n.bucket)} ({n.granularity}), since {iso(n.since)}",
        f"key: {n.key}",
    ]
    if n.url:
        lines.append(f"dashboard: {n.url}")
    lines += ["", "labels: " + ", ".join(f"{k}={v}" for k, v in sorted(n.labels.items()))]
    return "\n".join(lines)


def slack_payload(n: Notice) -> dict[str, Any]:
    """A Slack incoming-webhook body (``text`` with mrkdwn; Mattermost and Rocket.Chat too)."""
    title = headline(n)
    if n.url:
        title = f"<{n.url}|{title}>"
    summary = n.annotations.get("summary", "")
    return {"text": f"{title}\n{summary}".strip()}


def email_message(n: Notice, channel: Channel) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = headline(n)
    message["From"] = channel.sender
    message["To"] = ", ".join(channel.to)
    message["X-Tally-Notification"] = n.id
    message.set_content(text_body(n))
    return message


@dataclass
class DeliveryStats:
    """Counters of this process (failed deliveries are also ``failed`` rows in the outbox)."""

    delivered: int = 0
    failed: int = 0
    retries: int = 0
    by_channel: dict[str, int] = field(default_factory=dict)


@dataclass
class Notifier:
    """Sends notices to channels, retrying with backoff."""

    channels: dict[str, Channel]
    external_url: str = ""
    attempts: int = 5
    backoff_s: float = 0.5
    timeout_s: float = 10.0
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    stats: DeliveryStats = field(default_factory=DeliveryStats)
    _session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def problem(self, channel_name: str) -> str:
        """Why ``channel_name`` cannot deliver as configured ("" when it can): its notices are
        held, not failed, until the definitions or the environment are fixed."""
        if channel_name == "log":
            return ""
        channel = self.channels.get(channel_name)
        if channel is None:
            return f"unknown channel {channel_name!r}"
        return channel_problem(channel, self.env)

    def _url(self, channel: Channel) -> str:
        reason = channel_problem(channel, self.env)
        if reason:
            raise DeliveryError(reason, False)
        return url_of(channel, self.env)

    async def deliver(
        self, n: Notice, channel_name: str, budget_s: float | None = None
    ) -> tuple[bool, int, str]:
        """Deliver with retries: (delivered, attempts made, last error). With ``budget_s``, the
        attempts and backoff together stop there (a receiver that accepts and never answers
        costs at most the budget)."""
        loop = asyncio.get_running_loop()
        deadline = None if budget_s is None else loop.time() + budget_s
        error = ""
        attempt = 0
        for attempt in range(1, self.attempts + 1):
            try:
                async with asyncio.timeout_at(deadline):
                    await self._send(n, channel_name)
                self.stats.delivered += 1
                return True, attempt, ""
            except DeliveryError as exc:
                error = exc.reason
                if not exc.retry or attempt == self.attempts:
                    break
            except TimeoutError:
                error = f"channel {channel_name}: no answer within the {budget_s:g} s budget"
                break
            pause = self.backoff_s * 2 ** (attempt - 1)
            if deadline is not None and loop.time() + pause >= deadline:
                error += f" (the {budget_s:g} s budget is spent)"
                break
            self.stats.retries += 1
            await asyncio.sleep(pause)
        self.stats.failed += 1
        self.stats.by_channel[channel_name] = self.stats.by_channel.get(channel_name, 0) + 1
        log.error("delivery of %s to %s failed: %s", n.id, channel_name, error)
        return False, attempt, error

    async def _send(self, n: Notice, channel_name: str) -> None:
        if channel_name == "log":
            log.warning("%s", text_body(n).replace("\n", " | "))
            return
        channel = self.channels.get(channel_name)
        if channel is None:
            raise DeliveryError(f"unknown channel {channel_name!r}", False)
        if channel.type == "log":
            log.warning("%s", text_body(n).replace("\n", " | "))
        elif channel.type == "webhook":
            await self._post(channel, alertmanager_payload(n, channel.name, self.external_url))
        elif channel.type == "slack":
            await self._post(channel, slack_payload(n))
        elif channel.type == "email":
            await asyncio.to_thread(self._smtp, channel, email_message(n, channel))

    async def _post(self, channel: Channel, body: dict[str, Any]) -> None:
        url = self._url(channel)
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s)
            )
        try:
            async with self._session.post(url, json=body) as response:
                if response.status < 300:
                    return
                retry = response.status == 429 or response.status >= 500
                raise DeliveryError(f"channel {channel.name}: HTTP {response.status}", retry)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryError(f"channel {channel.name}: {type(exc).__name__}", True) from None

    def _smtp(self, channel: Channel, message: EmailMessage) -> None:
        try:
            with smtplib.SMTP(channel.host, channel.port, timeout=self.timeout_s) as smtp:
                if channel.starttls:
                    smtp.starttls()
                if channel.username:
                    smtp.login(channel.username, self.env.get(channel.password_env, ""))
                smtp.send_message(message)
        except smtplib.SMTPResponseException as exc:
            retry = exc.smtp_code >= 400 and exc.smtp_code < 500
            raise DeliveryError(f"channel {channel.name}: SMTP {exc.smtp_code}", retry) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"channel {channel.name}: {type(exc).__name__}", True) from None
