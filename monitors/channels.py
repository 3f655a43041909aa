"""Is a channel usable as configured? One answer for the loader (``file:line`` errors at load),
``tally monitors list`` and the dispatcher (notices to an unusable channel are held, not
failed, and go out once it is fixed). Reasons name variables, never their values."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from tally.monitors.spec import Channel


def _http(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def url_of(channel: Channel, env: Mapping[str, str]) -> str:
    """The webhook URL: ``url``, or the value of ``url_env`` ("" when unset)."""
    return env.get(channel.url_env, "") if channel.url_env else channel.url


def problem(channel: Channel, env: Mapping[str, str]) -> str:
    """Why ``channel`` cannot deliver with ``env``, or "" when it can."""
    where = f"channel {channel.name!r}"
    if channel.type in ("webhook", "slack"):
        if channel.url_env and not env.get(channel.url_env):
            return f"{where}: url_env {channel.url_env} is not set"
        if not _http(url_of(channel, env)):
            what = f"the value of {channel.url_env}" if channel.url_env else "url"
            return f"{where}: {what} is not an http(s) URL with a host"
    secret = channel.password_env
    if channel.type == "email" and channel.username and secret and not env.get(secret):
        return f"{where}: password_env {channel.password_env} is not set"
    return ""


def problems(channels: Mapping[str, Channel], env: Mapping[str, str]) -> list[str]:
    """``file:line: reason`` of every unusable channel, in name order."""
    out = []
    for name in sorted(channels):
        reason = problem(channels[name], env)
        if reason:
            out.append(f"{channels[name].source or '?'}: {reason}")
    return out
