"""How a job's arguments are recorded in the job log: on or off, and redacted first.

Arguments are recorded by default (they are what a reader needs to replay a failed run), cut
to ``TraceLimits.max_args_bytes``, after ``redact_secret_names`` replaced the values of
mapping keys that name secrets. Positional secrets cannot be recognised: pass your own
``redact`` (it gets ``[args, kwargs]`` and returns what to record) or ``record=False``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

REDACTED = "[redacted]"
REDACTION_FAILED = "[arguments not recorded: redaction failed]"
SECRET_NAME = re.compile(
    r"pass(word|wd|phrase)?|secret|token|api[_-]?key|auth|credential|cookie|session"
    r"|private[_-]?key|card|cvv|iban|ssn",
    re.IGNORECASE,
)
_MAX_DEPTH = 8
_MAX_ITEMS = 256  # per container: the recorded text is cut to max_args_bytes anyway


def redact_secret_names(value: object, depth: int = 0) -> object:
    """``value`` with the values of secret-looking mapping keys replaced by ``[redacted]``.

    Walks mappings, lists and tuples (8 levels, the first 256 items of each; deeper or later
    parts are left out, as the recorded text is bounded anyway).
    """
    if depth >= _MAX_DEPTH:
        return "…"
    if isinstance(value, Mapping):
        out: dict[object, object] = {}
        for n, (key, item) in enumerate(value.items()):
            if n >= _MAX_ITEMS:
                out["…"] = "…"
                break
            secret = isinstance(key, str) and SECRET_NAME.search(key) is not None
            out[key] = REDACTED if secret else redact_secret_names(item, depth + 1)
        return out
    if isinstance(value, list | tuple):
        items = [redact_secret_names(item, depth + 1) for item in value[:_MAX_ITEMS]]
        return [*items, "…"] if len(value) > _MAX_ITEMS else items
    return value


@dataclass(frozen=True)
class ArgsPolicy:
    """``TraceRecorder(..., args=ArgsPolicy(...))``: whether and how arguments are recorded."""

    record: bool = True
    redact: Callable[[object], object] | None = redact_secret_names

    def prepare(self, args: object) -> object | None:
        """What to record for ``args`` (``[args, kwargs]``); None when nothing is."""
        if not self.record:
            return None
        if self.redact is None:
            return args
        try:
            return self.redact(args)
        except Exception:  # never record what the redactor could not clean
            return REDACTION_FAILED
