"""Where ClickHouse is and how to log in: an http(s) URL, a user, a password, TLS.

The rows of ``CONNECTION`` are the one declaration of these settings (flag, ``TALLY_*``
variable, default, help) for every service; the password is a secret row (environment only)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tally.schemas.ddl import DEFAULT_DEDUP_WINDOW_FLUSHES
from tally.schemas.placement import Placement
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
    """Where the rollups live. ``url`` is an http(s) URL of clickhouse-server or ours, or the
    comma-separated URLs of the replicas of one shard (clients use the first that answers and
    move on when one cannot be reached: ``clickhouse/failover.py``); any other URL is refused
    here (:class:`BadClickHouseUrl`), so no component guesses a host. ``cluster`` names the
    cluster of those replicas: tally's DDL then runs ``ON CLUSTER`` with replicated engines."""

    url: str = DEFAULT_URL
    user: str = DEFAULT_USER
    password: str = field(default="", repr=False)
    verify_tls: bool = True
    ca_cert: str | None = None
    insert_timeout_s: float = 120.0
    cluster: str | None = None

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise BadClickHouseUrl(f"ClickHouse URL {self.url!r} is not {CLICKHOUSE_URL_FORM}")
        self.placement  # noqa: B018 - validates the cluster name

    @property
    def urls(self) -> list[str]:
        """Each URL of ``url`` (one, or the replicas' in order)."""
        return [u.strip() for u in self.url.split(",") if u.strip()]

    @property
    def endpoints(self) -> list[ClickHouseEndpoint]:
        """Host, port and TLS of each URL."""
        return [clickhouse_endpoint(u) for u in self.urls]

    @property
    def endpoint(self) -> ClickHouseEndpoint:
        """Host, port and TLS of the first URL."""
        return self.endpoints[0]

    @property
    def placement(self) -> Placement:
        """One server, or ``cluster``'s replicas with replicated engines."""
        return Placement(self.cluster, replicated=self.cluster is not None)


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
        Setting(
            "clickhouse_cluster", optional_text, None, "--clickhouse-cluster",
            "TALLY_CLICKHOUSE_CLUSTER",
            "cluster of the replicas in --clickhouse-url: DDL ON CLUSTER, Replicated* engines"
            " (docs/cluster.md)",
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
            cluster=values.get("clickhouse_cluster") or None,
        )
    except BadClickHouseUrl as exc:
        raise BadClickHouseUrlSetting(CONNECTION["clickhouse_url"], str(exc)) from None
    except ValueError as exc:  # the cluster name
        raise BadSetting(CONNECTION["clickhouse_cluster"], str(exc)) from None


def clickhouse_from_env(env: Mapping[str, str]) -> ClickHouseSettings:
    """The :class:`ClickHouseSettings` the ``TALLY_CLICKHOUSE_*`` variables describe."""
    return clickhouse_from(CONNECTION.resolve({}, env))
