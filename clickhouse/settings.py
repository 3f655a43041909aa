"""Where ClickHouse is and how to log in: an http(s) URL, a user, a password, TLS.

The rows of ``CONNECTION`` are the one declaration of these settings (flag, ``TALLY_*``
variable, default, help) for every service; the password is a secret row (environment only)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tally.schemas.ddl import DEFAULT_DEDUP_WINDOW_FLUSHES
from tally.schemas.settings_table import (
    BadSetting,
    Setting,
    SettingsTable,
    optional_text,
    positive_int,
    text,
)

DEFAULT_URL = "http://127.0.0.1:8123"
DEFAULT_USER = "default"
DEFAULT_DATABASE = "tally"

CLICKHOUSE_URL_FORM = "http(s)://host[:port], e.g. https://ch.example.com:8443"


class BadClickHouseUrl(ValueError):
    """A ClickHouse URL that does not say scheme and host (``ch.example.com:8443``)."""


@dataclass(frozen=True, slots=True)
class ClickHouseEndpoint:
    """Host, port and TLS of a ClickHouse HTTP(S) URL."""

    host: str
    port: int
    secure: bool


def clickhouse_endpoint(url: str) -> ClickHouseEndpoint:
    """The endpoint of ``http(s)://host[:port]``; :class:`BadClickHouseUrl` for anything else.

    Without this a scheme-less ``ch.example.com:8443`` parses as scheme ``ch.example.com`` and no
    host, and clients fall back to plain HTTP on 127.0.0.1:8123 with the remote password."""
    parts = urlsplit(url.strip()) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadClickHouseUrl(f"ClickHouse URL {url!r} is not {CLICKHOUSE_URL_FORM}")
    try:
        port = parts.port
    except ValueError:
        raise BadClickHouseUrl(
            f"ClickHouse URL {url!r} has a bad port: expected {CLICKHOUSE_URL_FORM}"
        ) from None
    secure = parts.scheme == "https"
    return ClickHouseEndpoint(parts.hostname, port or (8443 if secure else 8123), secure)


@dataclass(frozen=True)
class ClickHouseSettings:
    """Where the rollups live. ``url`` is an http(s) URL of clickhouse-server or ours; any
    other URL is refused here (:class:`BadClickHouseUrl`), so no component guesses a host."""

    url: str = DEFAULT_URL
    user: str = DEFAULT_USER
    password: str = field(default="", repr=False)
    verify_tls: bool = True
    ca_cert: str | None = None
    insert_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        clickhouse_endpoint(self.url)

    @property
    def endpoint(self) -> ClickHouseEndpoint:
        """Host, port and TLS of ``url``."""
        return clickhouse_endpoint(self.url)


CONNECTION = SettingsTable(
    (
        Setting(
            "clickhouse_url", text, DEFAULT_URL, "--clickhouse-url", "TALLY_CLICKHOUSE_URL",
            "ClickHouse HTTP(S) URL",
        ),
        Setting(
            "clickhouse_user", text, DEFAULT_USER, "--clickhouse-user", "TALLY_CLICKHOUSE_USER",
            "ClickHouse user; the password only from TALLY_CLICKHOUSE_PASSWORD",
        ),
        Setting(
            "clickhouse_password", text, "", "", "TALLY_CLICKHOUSE_PASSWORD",
            "ClickHouse password", secret=True,
        ),
        Setting(
            "clickhouse_ca_cert", optional_text, None, "--clickhouse-ca-cert",
            "TALLY_CLICKHOUSE_CA_CERT", "CA bundle for ClickHouse HTTPS",
        ),
    )
)  # fmt: skip
DATABASE = Setting(
    "database", text, DEFAULT_DATABASE, "--database", "TALLY_DATABASE",
    "ClickHouse database of the rollups",
)  # fmt: skip


def dedup_window(value: str) -> int:
    """An integer >= 1: a dedup window of 0 would turn dedup off."""
    try:
        return positive_int(value)
    except ValueError as exc:
        raise ValueError(f"{exc}: 0 turns off the dedup that exactly-once replays need") from None


DEDUP_WINDOW = Setting(
    "dedup_window", dedup_window, DEFAULT_DEDUP_WINDOW_FLUSHES, "--dedup-window",
    "TALLY_DEDUP_WINDOW",
    "flushes a replay may lag behind and still be deduplicated; applied on every start,"
    " 0 is refused",
)  # fmt: skip


class BadClickHouseUrlSetting(BadSetting, BadClickHouseUrl):
    """``--clickhouse-url`` or ``TALLY_CLICKHOUSE_URL`` is not an http(s) URL."""


def clickhouse_from(values: Mapping[str, Any]) -> ClickHouseSettings:
    """The :class:`ClickHouseSettings` of resolved ``CONNECTION`` values."""
    try:
        return ClickHouseSettings(
            url=values["clickhouse_url"],
            user=values["clickhouse_user"],
            password=values["clickhouse_password"],
            ca_cert=values["clickhouse_ca_cert"],
        )
    except BadClickHouseUrl as exc:
        raise BadClickHouseUrlSetting(CONNECTION["clickhouse_url"], str(exc)) from None


def clickhouse_from_env(env: Mapping[str, str]) -> ClickHouseSettings:
    """The :class:`ClickHouseSettings` the ``TALLY_CLICKHOUSE_*`` variables describe."""
    return clickhouse_from(CONNECTION.resolve({}, env))
