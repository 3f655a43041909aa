"""What a failed or retried run records about its exception: message and bounded traceback."""

from __future__ import annotations

import traceback

from tally.ingest.text import valid_text
from tally.traces.limits import TRUNCATED, TraceLimits, cut, safe_repr


def exception_message(exc: BaseException, limits: TraceLimits) -> str:
    """``str(exc)`` cut to ``max_message_bytes`` (its ``repr`` when ``str`` raises)."""
    try:
        text = str(exc)
    except Exception:
        text = safe_repr(exc)
    return cut(text, limits.max_message_bytes)[0]


def exception_traceback(exc: BaseException, limits: TraceLimits) -> str:
    """The formatted traceback (chained causes included), cut to ``max_traceback_bytes``.

    A longer one keeps its *end* (the innermost frames and the exception line, what a
    reader needs first) behind a first line ``…[truncated] <original> bytes, the last <limit>
    kept``; the whole text, that line included, stays within the limit.
    """
    try:
        text = valid_text("".join(traceback.format_exception(exc)))
    except Exception:
        return ""
    return cut_tail(text, limits.max_traceback_bytes)


def cut_tail(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes by dropping its beginning."""
    if len(text) * 4 <= limit:
        return text
    raw = text.encode("utf-8", "replace")
    if len(raw) <= limit:
        return text
    marker = f"{TRUNCATED} {len(raw)} bytes, the last {limit} kept\n"
    keep = max(0, limit - len(marker.encode()))
    return marker + raw[len(raw) - keep :].decode("utf-8", "ignore")
