"""Text at the traces' edge (one UTF-8 rule with the metrics client), the byte budget and
the per-execution sampling decision (no network)."""

from __future__ import annotations

import os

import pytest

from tally.ingest import ClientSettings, Tracker
from tally.ingest.jobs import JobTracker, current_run, report_result
from tally.traces import SamplingPolicy, TraceLimits, TraceRecorder, artifact, note, tag, trace
from tally.traces.codec import encoded_size
from tally.traces.model import Execution
from tally.traces.recorder import new_execution_id

BAD = os.fsdecode(b"report-\xff.csv")  # "report-\udcff.csv": not encodable as UTF-8


class NoMetrics:
    def track(self, *args: object, **kwargs: object) -> bool:
        return True


class Shipped(list):
    def ship(self, execution: Execution) -> bool:
        self.append(execution)
        return True


def make(policy: SamplingPolicy | None = None, limits: TraceLimits | None = None):
    out = Shipped()
    recorder = TraceRecorder(out, policy or SamplingPolicy(every=1), limits)
    return JobTracker(NoMetrics(), "event::job", traces=recorder), out


def encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def all_text(execution: Execution) -> list[str]:
    texts = [execution.job, execution.tenant, execution.code, *execution.tags.items()]
    texts += [t for line in execution.lines for t in (line.name, line.text, line.outcome)]
    texts += [t for ev in execution.events for t in (ev.job, ev.args, ev.detail, ev.ref)]
    return [t for item in texts for t in (item if isinstance(item, tuple) else (item,))]


def test_text_that_is_not_utf8_is_escaped_where_it_enters_a_trace():
    jobs, out = make()

    class BadError(Exception):
        pass

    @jobs(name=BAD, tenant=BAD)
    def job() -> None:
        report_result(code=BAD)
        tag(BAD, BAD)
        with trace(BAD) as block:
            note(BAD)
            note(BAD * 2000)  # long: cut at max_text_bytes
            block.result({"file": BAD})
            artifact(BAD, BAD)
        raise BadError()

    with pytest.raises(BadError):
        job()
    (execution,) = out
    texts = all_text(execution)
    assert all(encodes(t) for t in texts)
    assert execution.lines[1].text == "report-\\udcff.csv"  # the documented escape
    assert execution.lines[2].truncated and encodes(execution.lines[2].text)
    assert execution.tags == {"report-\\udcff.csv": "report-\\udcff.csv"}
    assert execution.code == "report-\\udcff.csv"
    assert encoded_size(execution) > 0  # the codec takes it


def test_the_metrics_tracker_and_the_traces_share_one_text_rule():
    from tally.ingest.text import text_problem, valid_text

    samples = ["calc", "Ünïcode ✓", "😀", BAD, "\ud800", "a\udfffb", ""]
    tracker = Tracker(ClientSettings(bootstrap_servers="127.0.0.1:1", close_timeout_s=0.2))
    try:
        for text in samples:
            ok = text_problem(text) is None
            assert ok == encodes(text)
            assert valid_text(text) == text if ok else encodes(valid_text(text))
            if text:  # as a key and as a path: refused exactly when the traces escape it
                assert tracker.track(f"k::{text}", {"count": 1}) is ok
                assert tracker.track("k", {f"p{text}": 1}) is ok
        stats = tracker.stats()
        assert stats.invalid == 2 * 3 and stats.internal_errors == 0
    finally:
        tracker.close(0.2)


def test_the_trace_budget_counts_bytes_not_characters():
    limits = TraceLimits()
    jobs, out = make()

    @jobs
    def job() -> None:
        for _ in range(1000):
            note("😀" * 1024)  # 4 KiB of UTF-8 each
        with trace("x" * 10):
            pass

    job()
    (execution,) = out
    texts = sum(len(line.text.encode()) + len(line.name.encode()) for line in execution.lines)
    assert texts <= limits.max_bytes
    assert execution.dropped == 1000 + 1 - len(execution.lines)
    assert encoded_size(execution) < 300 * 1024  # the documented bound of one record
    assert encoded_size(execution) < 1024 * 1024  # under Kafka's default record size


def test_enqueued_events_count_against_the_byte_budget():
    jobs, out = make()

    @jobs
    def job() -> None:
        run = current_run()
        for n in range(5000):
            jobs.traces.enqueued(run, "child", f"id-{n}", ["x" * 900])

    job()
    (execution,) = out
    assert encoded_size(execution) < 300 * 1024
    enqueued = [e for e in execution.events if e.event == "enqueued"]
    assert 0 < len(enqueued) < 5000 and execution.dropped == 5000 - len(enqueued)


def test_one_in_n_is_decided_by_the_execution_id_in_any_process():
    from tally.traces.sampling import Sampler, keep_one_in

    ids = [new_execution_id() for _ in range(20_000)]
    policy = SamplingPolicy(every=100)
    first = [Sampler(policy).reason("calc", "success", {}, i) for i in ids]
    again = [Sampler(policy).reason("calc", "success", {}, i) for i in reversed(ids)][::-1]
    assert first == again  # no state: a fresh sampler (a new process) decides the same
    kept = sum(r == "sample" for r in first)
    assert 120 <= kept <= 280  # 1 in 100 of 20,000 (binomial: 200 expected, sd 14)
    assert [r == "sample" for r in first] == [keep_one_in(i, 100) for i in ids]
    assert keep_one_in(ids[0], 1) and not keep_one_in(ids[0], 0)
    fixed = "0123456789abcdef0123456789abcdef"
    assert keep_one_in(fixed, 7) == keep_one_in(fixed, 7)
