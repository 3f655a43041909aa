"""Bounds of one execution's trace, and how values are turned into (truncated) text."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from tally.ingest.text import valid_text

TRUNCATED = "…[truncated]"


@dataclass(frozen=True)
class TraceLimits:
    """Per-run bounds (documented in docs/traces.md).

    - ``max_lines``: lines kept per execution; later ones are dropped and counted
      (``Execution.dropped``), the blocks still measure their time.
    - ``max_bytes``: UTF-8 bytes of names, texts and job-log events per execution; past it
      lines (and ``enqueued`` events) are dropped too.
    - ``max_text_bytes``: a note or a result's serialized value is cut to this many UTF-8 bytes.
    - ``max_artifact_bytes``: an artifact's payload is cut to this many bytes.
    - ``max_name_bytes``: a block name (or artifact name) is cut to this many bytes.
    - ``max_tags`` / ``max_tag_bytes``: tags per execution and bytes per tag value.
    - ``max_args_bytes``: the job's arguments in the job log.
    - ``max_message_bytes``: a failed or retried run's exception message.
    - ``max_traceback_bytes``: its formatted traceback; a longer one keeps its end.
    """

    max_lines: int = 1_000
    max_bytes: int = 256 * 1024
    max_text_bytes: int = 4 * 1024
    max_artifact_bytes: int = 64 * 1024
    max_name_bytes: int = 200
    max_tags: int = 32
    max_tag_bytes: int = 200
    max_args_bytes: int = 1024
    max_message_bytes: int = 1024
    max_traceback_bytes: int = 16 * 1024


def cut(text: str, limit: int) -> tuple[str, bool, int]:
    """``text`` made valid UTF-8 and cut to at most ``limit`` bytes at a character boundary.

    Lone surrogates (text that is not valid UTF-8) are escaped as ``\\udcff`` first
    (``tally.ingest.text.valid_text``, the metrics client's rule). Returns the text, whether
    it was cut, and the original size in bytes. A cut text ends with ``…[truncated]``
    (counted inside ``limit``).
    """
    text = valid_text(text)
    if len(text) * 4 <= limit:  # cannot exceed the limit: skip encoding
        return text, False, 0
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text, False, 0
    marker = TRUNCATED.encode()
    keep = max(0, limit - len(marker))
    head = raw[:keep].decode("utf-8", "ignore")
    return head + TRUNCATED if keep else TRUNCATED[: max(0, limit)], True, len(raw)


def _fallback(value: object) -> object:
    """msgspec's hook for types it cannot encode: their ``repr``."""
    return safe_repr(value)


_ENCODER = msgspec.json.Encoder(enc_hook=_fallback)


def safe_repr(value: object) -> str:
    """``repr(value)``, or a placeholder when ``repr`` itself raises."""
    try:
        return repr(value)
    except Exception:
        return f"<{type(value).__name__} (repr failed)>"


def serialize(value: object) -> str:
    """A value as text: strings as they are, else JSON (unknown types as their ``repr``).

    Not yet valid UTF-8 for certain: ``cut`` (which every recorded text goes through) is.
    """
    if type(value) is str:
        return value
    try:
        return _ENCODER.encode(value).decode()
    except Exception:
        return safe_repr(value)
