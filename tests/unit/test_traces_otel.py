"""The OpenTelemetry processor and exporter with the real opentelemetry-sdk."""

from __future__ import annotations

import contextlib

import pytest
from opentelemetry import context, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags

from tally.traces import SamplingPolicy
from tally.traces.model import Execution
from tally.traces.otel import TallySpanExporter, TallySpanProcessor
from tally.traces.sampling import keep_one_in


class Shipped(list):
    def ship(self, execution: Execution) -> bool:
        self.append(execution)
        return True


def run_job(tracer, fail: bool = False) -> None:
    with tracer.start_as_current_span(
        "billing.sync_invoice",
        attributes={"tally.tenant": "acme", "customer": 42, "tally.code": "OK"},
    ):
        with tracer.start_as_current_span("fetch invoice") as span:
            span.add_event("cache miss", {"key": "inv-1"})
            span.set_attribute("tally.result", "{'id': 1}")
            with tracer.start_as_current_span("http GET"):
                pass
        with tracer.start_as_current_span("store") as span:
            if fail:
                try:
                    raise TimeoutError("db")
                except TimeoutError as exc:
                    span.record_exception(exc)
                    span.set_status(Status(StatusCode.ERROR))
        if fail:
            raise ValueError("failed")


@pytest.mark.parametrize("mode", ["processor", "exporter"])
def test_job_spans_become_executions_with_nested_lines(mode):
    shipped = Shipped()
    provider = TracerProvider()
    if mode == "processor":
        provider.add_span_processor(TallySpanProcessor(shipped, policy=SamplingPolicy(every=1)))
    else:
        exporter = TallySpanExporter(shipped, policy=SamplingPolicy(every=1))
        provider.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=2))
    tracer = provider.get_tracer("test")
    run_job(tracer)
    with pytest.raises(ValueError):
        run_job(tracer, fail=True)
    provider.force_flush()
    provider.shutdown()
    ok, failed = shipped
    assert (ok.job, ok.tenant, ok.state, ok.code, ok.tags) == (
        "billing.sync_invoice", "acme", "success", "OK", {"customer": "42"},
    )  # fmt: skip
    assert len(ok.id) == 48 and ok.parent_id == ""
    shape = [(ln.seq, ln.parent, ln.depth, ln.kind, ln.name, ln.outcome) for ln in ok.lines]
    assert shape == [
        (1, 0, 0, "block", "fetch invoice", "ok"),
        (2, 1, 1, "result", "", ""),
        (3, 1, 1, "note", "cache miss", ""),
        (4, 1, 1, "block", "http GET", "ok"),
        (5, 0, 0, "block", "store", "ok"),
    ]
    assert ok.lines[2].text == '{"key":"inv-1"}'
    assert ok.lines[0].duration_us >= ok.lines[3].duration_us
    assert (failed.state, failed.error) == ("failure", "ValueError")
    assert failed.lines[-2].outcome == "TimeoutError"  # store, then its exception event note
    assert [e.event for e in failed.events] == ["started", "failed"]


def test_a_remote_parent_links_the_execution_to_the_enqueuing_span():
    shipped = Shipped()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(TallySpanExporter(shipped)))
    tracer = provider.get_tracer("test")
    remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1))
    token = context.attach(trace.set_span_in_context(NonRecordingSpan(remote)))
    try:
        with tracer.start_as_current_span("resource job"):
            pass
    finally:
        context.detach(token)
    (execution,) = shipped
    assert execution.parent_id == f"{0xABC:032x}{0xDEF:016x}"
    assert execution.id.startswith(f"{0xABC:032x}")


def test_failures_are_kept_and_successes_sampled_through_otel():
    shipped = Shipped()
    provider = TracerProvider()
    provider.add_span_processor(TallySpanProcessor(shipped, policy=SamplingPolicy(every=100)))
    tracer = provider.get_tracer("test")
    for i in range(300):
        with contextlib.suppress(ValueError):
            run_job(tracer, fail=i % 10 == 0)
    kept = [e for e in shipped if e.sampled]
    assert sum(e.state == "failure" for e in kept) == 30
    assert all(e.lines for e in kept)
    successes = {e.id for e in shipped if e.state == "success"}
    assert len(successes) == 270
    assert {e.id for e in kept if e.state == "success"} == {
        i for i in successes if keep_one_in(i, 100)
    }  # the recorder's rule: a stable hash of the execution id
