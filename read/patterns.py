"""Key patterns (``event::schedule::*``) and path wildcards (``codes.*``, ``tenants.*.count``).

Both become *values* bound as query parameters (a LIKE pattern, a regular expression), never
SQL text. In a key pattern ``*`` matches any run of characters; in a path wildcard ``*``
matches exactly one dotted segment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tally.read.errors import BadPattern
from tally.schemas.limits import Limits

_LIMITS = Limits()
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
OTHER = "(other)"


@dataclass(frozen=True, slots=True)
class KeyPattern:
    """A validated key pattern: ``like`` is its LIKE form, ``prefix`` its literal head."""

    text: str
    like: str
    prefix: str

    @classmethod
    def parse(cls, text: str | None) -> KeyPattern:
        """``None``/``""``/``*`` match every key."""
        text = (text or "*").strip() or "*"
        if len(text) > _LIMITS.max_key_length:
            raise BadPattern(f"key pattern longer than {_LIMITS.max_key_length} characters")
        if _CONTROL.search(text):
            raise BadPattern("key pattern contains control characters")
        if "**" in text:
            raise BadPattern("'**' is not allowed in a key pattern; '*' already matches any run")
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return cls(text, escaped.replace("*", "%"), text.split("*", 1)[0])

    @property
    def is_exact(self) -> bool:
        """True when the pattern has no wildcard."""
        return "*" not in self.text


@dataclass(frozen=True, slots=True)
class PathWildcard:
    """A path with ``*`` segments; ``regex`` matches the concrete paths it stands for."""

    text: str
    regex: str

    @classmethod
    def parse(cls, text: str) -> PathWildcard:
        segments = text.split(".")
        if not text or any(not s for s in segments):
            raise BadPattern(f"path pattern {text!r} has an empty segment")
        if len(text) > _LIMITS.max_path_length or len(segments) > _LIMITS.max_depth:
            raise BadPattern(f"path pattern {text!r} is too long or too deep")
        if _CONTROL.search(text):
            raise BadPattern("path pattern contains control characters")
        for s in segments:
            if "*" in s and s != "*":
                raise BadPattern(
                    f"in path pattern {text!r}, '*' must be a whole segment (like codes.*)"
                )
        parts = ["[^.]+" if s == "*" else re.escape(s) for s in segments]
        return cls(text, "^" + r"\.".join(parts) + "$")

    @property
    def other_name(self) -> str:
        """The row name that sums what the top-N left out, e.g. ``codes.(other)``."""
        return self.text.replace("*", OTHER)


def is_wildcard(path: str) -> bool:
    """True if ``path`` has a ``*`` segment."""
    return "*" in path


def check_path(path: str) -> str:
    """``path`` if it is a valid concrete path, else :class:`BadPattern`."""
    problem = _LIMITS.path_problem(path)
    if problem is not None or _CONTROL.search(path or ""):
        raise BadPattern(f"path {path!r} is not valid ({problem or 'control characters'})")
    return path


def check_key(key: str) -> str:
    """``key`` if it is a valid concrete key, else :class:`BadPattern`."""
    problem = _LIMITS.key_problem(key)
    if problem is not None:
        raise BadPattern(f"key {key!r} is not valid ({problem})")
    if "*" in key:
        raise BadPattern(f"key {key!r} has a wildcard; list keys with keys() first")
    return key
