"""Where ClickHouse is and how to log in: an http(s) URL, a user, a password, TLS."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

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

    url: str = "http://127.0.0.1:8123"
    user: str = "default"
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
