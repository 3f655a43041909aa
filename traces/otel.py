"""OpenTelemetry: job spans from opentelemetry-sdk into tally executions.

``TallySpanProcessor(shipper)`` (or ``TallySpanExporter`` behind any span processor) turns each
*job span* — a span without a parent, or whose parent is remote (the enqueuing service) — and
the spans under it into one ``Execution`` (docs/traces.md, "OpenTelemetry" has the mapping):

- execution id = trace id (32 hex) + the job span's id (16 hex); parent id = trace id + the
  remote parent span's id, when there is one;
- job = ``tally.job`` attribute or the span name; tenant = ``tally.tenant``; key =
  ``tally.key`` or the processor's ``key``; code = ``tally.code``; attempt = ``tally.attempt``;
- state = ``tally.state``, else ``failure`` when the status is ERROR, else ``success``;
  error = the ``exception.type`` of its last exception event;
- other attributes of the job span are tags (strings, bounded like ``tag``);
- descendant spans are block lines (nested by parent, ordered by start), with outcome ``ok``
  or their exception type (``error`` without one); span events are note lines (the event name,
  its attributes as JSON); a ``tally.result`` attribute is the block's result line.

Spans of a job arrive before the job span ends (children end first); they wait in a bounded
buffer per trace until it does. Sampling is the same tail sampling as ``TraceRecorder``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

from tally.ingest.text import valid_text
from tally.traces.limits import TraceLimits, cut, serialize
from tally.traces.model import BLOCK, NOTE, OK, RESULT, Execution, Line, LogEvent
from tally.traces.recorder import FAILED, FINISHED, STARTED, Shipper
from tally.traces.sampling import Sampler, SamplingPolicy

RESERVED = ("tally.job", "tally.tenant", "tally.key", "tally.code", "tally.attempt", "tally.state")


def _error_type(span: ReadableSpan) -> str:
    for event in reversed(span.events or ()):
        if event.name == "exception" and event.attributes:
            return str(event.attributes.get("exception.type", "")).rsplit(".", 1)[-1]
    return ""


def _is_job_span(span: ReadableSpan) -> bool:
    return span.parent is None or bool(span.parent.is_remote)


class SpanAssembler:
    """Groups ended spans by trace until their job span ends; thread-safe and bounded."""

    def __init__(
        self,
        shipper: Shipper,
        key: str = "event::otel",
        policy: SamplingPolicy | None = None,
        limits: TraceLimits | None = None,
        max_pending_traces: int = 10_000,
    ) -> None:
        self.shipper = shipper
        self.key = key
        self.limits = limits or TraceLimits()
        self.sampler = Sampler(policy or SamplingPolicy())
        self.index_unsampled = self.sampler.policy.index_unsampled
        self.max_pending = max_pending_traces
        self._pending: OrderedDict[int, list[ReadableSpan]] = OrderedDict()
        self._lock = threading.Lock()
        self.dropped_spans = 0

    def add(self, span: ReadableSpan) -> None:
        """One ended span; a job span ships its execution."""
        context = span.context
        if context is None:
            return
        trace_id = context.trace_id
        if not _is_job_span(span):
            with self._lock:
                spans = self._pending.get(trace_id)
                if spans is None:
                    if len(self._pending) >= self.max_pending:
                        self._pending.popitem(last=False)
                        self.dropped_spans += 1
                    spans = self._pending[trace_id] = []
                if len(spans) < self.limits.max_lines:
                    spans.append(span)
                else:
                    self.dropped_spans += 1
            return
        with self._lock:
            spans = self._pending.pop(trace_id, [])
        execution = self.execution(span, spans)
        if execution is not None:
            self.shipper.ship(execution)

    def execution(self, job: ReadableSpan, spans: list[ReadableSpan]) -> Execution | None:
        """The execution of ``job`` with the descendants found in ``spans`` as lines."""
        attributes: dict[str, Any] = dict(job.attributes or {})
        context = job.context
        assert context is not None
        trace_hex = f"{context.trace_id:032x}"
        start_ns = job.start_time or 0
        end_ns = job.end_time or start_ns
        error = _error_type(job)
        status = job.status.status_code if job.status is not None else StatusCode.UNSET
        state = str(
            attributes.get("tally.state")
            or ("failure" if status == StatusCode.ERROR else "success")
        )
        if state == "failure" and not error:
            error = "error"
        tags: dict[str, str] = {}
        for name, value in attributes.items():
            if name not in RESERVED and name != "tally.result" and len(tags) < self.limits.max_tags:
                tags[cut(name, self.limits.max_tag_bytes)[0]] = cut(
                    value if isinstance(value, str) else serialize(value), self.limits.max_tag_bytes
                )[0]
        job_name = valid_text(str(attributes.get("tally.job") or job.name))
        execution_id = f"{trace_hex}{context.span_id:016x}"
        reason = self.sampler.reason(job_name, state, tags, execution_id)
        if not reason and not self.index_unsampled:
            return None
        lines = self._lines(context.span_id, spans, start_ns, attributes) if reason else []
        parent = job.parent
        attempt = attributes.get("tally.attempt")
        started_us = start_ns // 1000
        end = FAILED if state == "failure" else FINISHED
        return Execution(
            id=execution_id,
            parent_id=f"{trace_hex}{parent.span_id:016x}" if parent is not None else "",
            ref="",
            job=job_name,
            tenant=valid_text(str(attributes.get("tally.tenant") or "system")),
            key=valid_text(str(attributes.get("tally.key") or self.key)),
            state=valid_text(state),
            code=valid_text(str(attributes.get("tally.code") or "")),
            error=valid_text(error),
            attempt=int(attempt) if isinstance(attempt, int) else 1,
            started_us=started_us,
            duration_us=(end_ns - start_ns) // 1000,
            tags=tags,
            sampled=reason,
            lines=lines,
            events=[
                LogEvent(started_us, STARTED, job_name, 1),
                LogEvent(end_ns // 1000, end, job_name, 1, "", error),
            ],
            dropped=max(0, len(spans) - len(lines)) if reason else 0,
        )

    def _lines(
        self, root: int, spans: list[ReadableSpan], start_ns: int, root_attributes: dict
    ) -> list[Line]:
        by_parent: dict[int, list[ReadableSpan]] = {}
        for span in spans:
            if span.parent is not None:
                by_parent.setdefault(span.parent.span_id, []).append(span)
        lines: list[Line] = []
        limits = self.limits

        def text_line(
            kind: str, name: str, value: object, parent: int, depth: int, at: int
        ) -> None:
            if len(lines) >= limits.max_lines:
                return
            text, truncated, size = cut(serialize(value), limits.max_text_bytes)
            at_us = max(0, (at - start_ns) // 1000)
            line = Line(len(lines) + 1, parent, depth, kind, valid_text(name), at_us)
            line.text, line.truncated, line.size = text, truncated, size
            lines.append(line)

        def walk(span_id: int, parent_seq: int, depth: int) -> None:
            for span in sorted(by_parent.get(span_id, ()), key=lambda s: s.start_time or 0):
                if len(lines) >= limits.max_lines:
                    return
                begin, finish = span.start_time or 0, span.end_time or span.start_time or 0
                status = span.status.status_code if span.status is not None else StatusCode.UNSET
                outcome = (_error_type(span) or "error") if status == StatusCode.ERROR else OK
                name = cut(span.name, limits.max_name_bytes)[0]
                offset = max(0, (begin - start_ns) // 1000)
                line = Line(
                    len(lines) + 1, parent_seq, depth, BLOCK, name, offset,
                    (finish - begin) // 1000, outcome,
                )  # fmt: skip
                lines.append(line)
                attributes = dict(span.attributes or {})
                if "tally.result" in attributes:
                    text_line(
                        RESULT, "", attributes.pop("tally.result"), line.seq, depth + 1, finish
                    )
                for event in span.events or ():
                    text_line(
                        NOTE,
                        event.name,
                        dict(event.attributes or {}),
                        line.seq,
                        depth + 1,
                        event.timestamp,
                    )
                walk(span.context.span_id, line.seq, depth + 1)

        if "tally.result" in root_attributes:
            text_line(RESULT, "", root_attributes["tally.result"], 0, 0, start_ns)
        walk(root, 0, 0)
        return lines

    def flush(self, timeout_s: float) -> bool:
        """Flush the shipper (when it can be flushed)."""
        flush = getattr(self.shipper, "flush", None)
        return bool(flush(timeout_s)) if flush is not None else True


class TallySpanProcessor(SpanProcessor):
    """``provider.add_span_processor(TallySpanProcessor(shipper))``: never blocks ``on_end``."""

    def __init__(self, shipper: Shipper, **options: Any) -> None:
        self.assembler = SpanAssembler(shipper, **options)

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        """Nothing to do at start."""

    def on_end(self, span: ReadableSpan) -> None:
        """Buffer the span, or ship its job's execution (never raises)."""
        try:
            self.assembler.add(span)
        except Exception:  # instrumentation must not break the app
            self.assembler.dropped_spans += 1

    def shutdown(self) -> None:
        """Flush what was shipped."""
        self.assembler.flush(10.0)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Wait until shipped executions are acknowledged (or spooled)."""
        return self.assembler.flush(timeout_millis / 1000)


class TallySpanExporter(SpanExporter):
    """A ``SpanExporter`` for ``BatchSpanProcessor``/``SimpleSpanProcessor`` setups."""

    def __init__(self, shipper: Shipper, **options: Any) -> None:
        self.assembler = SpanAssembler(shipper, **options)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Hand spans to the assembler (children wait for their job span)."""
        try:
            for span in spans:
                self.assembler.add(span)
            return SpanExportResult.SUCCESS
        except Exception:
            return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        """Flush what was shipped."""
        self.assembler.flush(10.0)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Wait until shipped executions are acknowledged (or spooled)."""
        return self.assembler.flush(timeout_millis / 1000)
