"""ClickHouse's error codes and the ``Code: N. DB::Exception: ...`` errors sent to clients."""

from __future__ import annotations

import enum
import re


class ErrorCode(enum.IntEnum):
    """The ClickHouse error codes this module raises itself."""

    CANNOT_PARSE_TEXT = 6
    BAD_ARGUMENTS = 36
    NOT_IMPLEMENTED = 48
    SYNTAX_ERROR = 62
    UNKNOWN_COMPRESSION_METHOD = 89
    UNKNOWN_SETTING = 115
    REQUIRED_PASSWORD = 194
    TOO_MANY_SIMULTANEOUS_QUERIES = 202
    QUERY_IS_TOO_LARGE = 229
    CANNOT_DECOMPRESS = 271
    INVALID_SESSION_TIMEOUT = 374
    ACCESS_DENIED = 497
    AUTHENTICATION_FAILED = 516
    STD_EXCEPTION = 1001


# clickhouse-server's exceptionCodeToHTTPStatus; every other code is a 500.
_STATUS_BY_CODES: tuple[tuple[int, frozenset[int]], ...] = (
    (400, frozenset({6, 8, 15, 25, 26, 27, 36, 37, 38, 41, 44, 53, 62, 72, 117, 123, 167, 168,
                     223, 321, 376, 427, 441, 675, 676})),
    (401, frozenset({194})),
    (403, frozenset({192, 193, 497, 512, 516})),
    (404, frozenset({46, 47, 50, 56, 60, 63, 73, 78, 81, 115, 152, 336, 511})),
    (408, frozenset({159})),
    (411, frozenset({381})),
    (413, frozenset({229})),
    (415, frozenset({779})),
    (501, frozenset({48})),
    (503, frozenset({76, 209, 439})),
)  # fmt: skip

_CODE_IN_MESSAGE = re.compile(r"Code: (\d+)\.")


class ClickHouseError(Exception):
    """An error reported to the client as ``Code: N. DB::Exception: ...``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @classmethod
    def of(cls, code: ErrorCode, text: str) -> ClickHouseError:
        return cls(int(code), f"Code: {int(code)}. DB::Exception: {text}. ({code.name})")

    @classmethod
    def from_engine(cls, exc: BaseException) -> ClickHouseError:
        """Wrap chDB's exception, keeping its ``Code: N`` message."""
        text = str(exc)
        match = _CODE_IN_MESSAGE.search(text)
        if match is None:
            return cls.of(ErrorCode.STD_EXCEPTION, text)
        return cls(int(match.group(1)), text[match.start() :])

    def http_status(self) -> int:
        return next((status for status, codes in _STATUS_BY_CODES if self.code in codes), 500)

    def body(self, version: str) -> bytes:
        if "(version " in self.message:
            return f"{self.message}\n".encode()
        return f"{self.message} (version {version})\n".encode()
