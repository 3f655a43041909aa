"""The per-run trace buffer: bounded lines, tags and job-log events of one execution."""

from __future__ import annotations

import time
from typing import Protocol

from tally.ingest.text import utf8_size, valid_text
from tally.traces.limits import TraceLimits, cut, serialize
from tally.traces.model import ARTIFACT, BLOCK, NOTE, OK, RESULT, Line, LogEvent


class Clock(Protocol):
    """Where a trace reads the time: the ``time`` module, or a simulated clock (the same one
    ``JobTracker(clock=...)`` tracks runs at), so block timings follow simulated work."""

    def time(self) -> float: ...

    def perf_counter_ns(self) -> int: ...


class TraceBuffer:
    """Collects one execution's lines on the job's thread; plain appends, no I/O.

    Lines past ``max_lines`` or ``max_bytes`` (UTF-8 bytes, so the record stays bounded
    whatever the characters) are dropped and counted; an open block that was dropped still
    times nothing and costs nothing more. Every text is valid UTF-8 once recorded (lone
    surrogates escaped, see ``tally.ingest.text``).
    """

    __slots__ = (
        "args",
        "bytes",
        "clock",
        "dropped",
        "events",
        "limits",
        "lines",
        "ref",
        "start_ns",
        "start_us",
        "tags",
    )

    def __init__(self, limits: TraceLimits, clock: Clock | None = None) -> None:
        self.limits = limits
        self.clock = clock
        self.lines: list[Line] = []
        self.tags: dict[str, str] = {}
        self.events: list[LogEvent] = []
        self.dropped = 0
        self.bytes = 0
        self.ref = ""  # the framework's id of the message (e.g. Celery's task id)
        self.args = ""  # the job's arguments as job-log text
        if clock is None:
            self.start_ns = time.perf_counter_ns()
            self.start_us = time.time_ns() // 1000
        else:
            self.start_ns = clock.perf_counter_ns()
            self.start_us = round(clock.time() * 1e6)

    def _now_ns(self) -> int:
        clock = self.clock
        return time.perf_counter_ns() if clock is None else clock.perf_counter_ns()

    def offset_us(self) -> int:
        """Microseconds since the run started."""
        return (self._now_ns() - self.start_ns) // 1000

    def _room(self, size: int) -> bool:
        if len(self.lines) >= self.limits.max_lines or self.bytes + size > self.limits.max_bytes:
            self.dropped += 1
            return False
        self.bytes += size
        return True

    def _name(self, name: str) -> str:
        """A block or artifact name, valid UTF-8 and cut to ``max_name_bytes``."""
        return cut(name, self.limits.max_name_bytes)[0] if len(name) > 50 else valid_text(name)

    def open(self, name: str, parent: int, depth: int) -> Line | None:
        """Start a block line; None when the buffer is full (the block is not recorded)."""
        name = self._name(name)
        if not self._room(utf8_size(name) + 16):
            return None
        line = Line(len(self.lines) + 1, parent, depth, BLOCK, name, self.offset_us())
        self.lines.append(line)
        return line

    def close(self, line: Line, error: BaseException | None) -> None:
        """End a block: its duration and outcome (``ok`` or the exception's type name)."""
        line.duration_us = self.offset_us() - line.offset_us
        line.outcome = OK if error is None else type(error).__name__

    def text(self, kind: str, name: str, value: object, parent: int, depth: int) -> None:
        """A note, result or artifact line under ``parent``."""
        limits = self.limits
        limit = limits.max_artifact_bytes if kind == ARTIFACT else limits.max_text_bytes
        text, truncated, size = cut(value if type(value) is str else serialize(value), limit)
        name = self._name(name)
        if not self._room(utf8_size(text) + utf8_size(name) + 16):
            return
        lines = self.lines
        at = (self._now_ns() - self.start_ns) // 1000
        lines.append(
            Line(len(lines) + 1, parent, depth, kind, name, at, 0, "", text, truncated, size)
        )

    def note(self, text: object, parent: int, depth: int) -> None:
        """A note line."""
        self.text(NOTE, "", text, parent, depth)

    def result(self, value: object, parent: int, depth: int) -> None:
        """A block's value."""
        self.text(RESULT, "", value, parent, depth)

    def tag(self, name: str, value: object) -> None:
        """Set a tag of the execution (bounded count and size)."""
        limits = self.limits
        if name not in self.tags and len(self.tags) >= limits.max_tags:
            self.dropped += 1
            return
        name = cut(str(name), limits.max_tag_bytes)[0]
        self.tags[name] = cut(
            value if type(value) is str else serialize(value), limits.max_tag_bytes
        )[0]

    def event(self, event: str, job: str, attempt: int, args: str = "", **more: str) -> None:
        """Record a job-log event now (its texts count against ``max_bytes``)."""
        job, args = valid_text(job), valid_text(args)
        more = {name: valid_text(value) for name, value in more.items()}
        size = utf8_size(job) + utf8_size(args) + sum(utf8_size(v) for v in more.values())
        if self.bytes + size + 16 > self.limits.max_bytes:
            self.dropped += 1
            return
        self.bytes += size + 16
        clock = self.clock
        now_us = time.time_ns() // 1000 if clock is None else round(clock.time() * 1e6)
        self.events.append(LogEvent(now_us, event, job, attempt, args, **more))
