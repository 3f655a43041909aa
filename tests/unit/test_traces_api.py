"""The tracing API, per-run bounds, truncation and tail sampling (no network)."""

from __future__ import annotations

import asyncio

import pytest

from tally.ingest.jobs import JobTracker
from tally.traces import SamplingPolicy, TraceLimits, TraceRecorder, artifact, note, tag, trace
from tally.traces.limits import TRUNCATED, cut
from tally.traces.model import Execution
from tally.traces.sampling import keep_one_in


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


def test_blocks_nest_with_durations_outcomes_and_results():
    jobs, out = make()

    @trace("helper")
    def helper(x: int) -> int:
        return x * 2

    @jobs
    def job() -> None:
        with trace("outer") as block:
            block.result(helper(2))
            with pytest.raises(KeyError), trace("inner"):
                raise KeyError("k")

    job()
    (execution,) = out
    shape = [(ln.seq, ln.parent, ln.depth, ln.kind, ln.name, ln.outcome) for ln in execution.lines]
    assert shape == [
        (1, 0, 0, "block", "outer", "ok"),
        (2, 1, 1, "block", "helper", "ok"),
        (3, 2, 2, "result", "", ""),
        (4, 1, 1, "result", "", ""),
        (5, 1, 1, "block", "inner", "KeyError"),
    ]
    assert execution.lines[2].text == "4"
    assert execution.lines[0].duration_us >= execution.lines[1].duration_us >= 0
    assert len(execution.id) == 32 and execution.state == "success"


def test_async_blocks_follow_their_tasks():
    jobs, out = make()

    @trace("step")
    async def step(i: int) -> int:
        await asyncio.sleep(0.001 * i)
        note(f"in {i}")
        return i

    @jobs
    async def job() -> None:
        async with trace("fan out"):
            await asyncio.gather(step(1), step(2))

    asyncio.run(job())
    lines = out[0].lines
    steps = [ln for ln in lines if ln.name == "step"]
    assert [s.parent for s in steps] == [1, 1]
    notes = [ln for ln in lines if ln.kind == "note"]
    # each note sits under its own task's block, not under whichever block opened last
    assert sorted((n.text, n.parent) for n in notes) == sorted(
        (f"in {i}", s.seq) for i, s in zip((1, 2), steps, strict=True)
    )


def test_oversized_results_and_artifacts_are_truncated_as_documented():
    limits = TraceLimits(max_text_bytes=100, max_artifact_bytes=1000)
    jobs, out = make(limits=limits)

    @jobs
    def job() -> None:
        with trace("big") as block:
            block.result("é" * 500)  # 1000 bytes of UTF-8
            artifact("page.html", "x" * 5000)
            note("short")

    job()
    result, art, short = out[0].lines[1:]
    assert result.truncated and result.size == 1000
    assert len(result.text.encode()) <= 100 and result.text.endswith(TRUNCATED)
    assert result.text.startswith("é" * 10)
    assert art.truncated and art.size == 5000 and len(art.text.encode()) <= 1000
    assert art.name == "page.html"
    assert not short.truncated and short.text == "short" and short.size == 0


def test_cut_never_splits_a_character():
    text, was_cut, size = cut("✓" * 100, 50)
    assert was_cut and size == 300
    assert text.encode().decode() == text and len(text.encode()) <= 50


def test_per_run_buffer_is_bounded_and_counts_what_it_dropped():
    jobs, out = make(limits=TraceLimits(max_lines=50))

    @jobs
    def job() -> None:
        for i in range(1000):
            with trace(f"step {i}"):
                note(i)

    job()
    (execution,) = out
    assert len(execution.lines) == 50
    assert execution.dropped == 1000 * 2 - 50


def test_unserializable_results_and_failing_repr_never_raise():
    class Evil:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    jobs, out = make()

    @jobs
    def job() -> str:
        with trace("x") as block:
            block.result({"a": Evil(), "b": {1, 2}})
            note(Evil())
            tag("who", Evil())
        return "done"

    assert job() == "done"
    texts = [ln.text for ln in out[0].lines if ln.kind != "block"]
    assert "repr failed" in texts[0] and "repr failed" in texts[1]
    assert jobs.errors == 0


def test_tracing_outside_a_run_does_nothing():
    with trace("alone") as block:
        block.result(1)
        note("n")
        tag("t", 1)
        artifact("a", "b")


def test_failures_are_always_kept_under_one_percent_sampling():
    jobs, out = make(SamplingPolicy(every=100))

    @jobs
    def job(i: int) -> None:
        with trace("work"):
            if i % 7 == 0:
                raise ValueError(i)

    failures = 0
    for i in range(5000):
        try:
            job(i)
        except ValueError:
            failures += 1
    kept = [e for e in out if e.sampled]
    failed = [e for e in kept if e.state == "failure"]
    assert len(failed) == failures == 715
    assert all(e.lines for e in failed)
    successes = [e for e in kept if e.state == "success"]
    assert 15 <= len(successes) <= 75  # 1 in 100 of 4285 successes (binomial: 43, sd 6.5)
    everyone = [e for e in out if e.state == "success"]
    assert {e.id for e in successes} == {e.id for e in everyone if keep_one_in(e.id, 100)}
    unsampled = [e for e in out if not e.sampled]
    assert unsampled and all(not e.lines for e in unsampled)  # index row and job log only
    assert len(out) == 5000


def test_kept_tags_and_states_and_per_job_rates():
    jobs, out = make(SamplingPolicy(every=0, per_job={"hot": 1}, keep_tags=frozenset({"vip=yes"})))

    @jobs
    def cold(vip: str) -> None:
        tag("vip", vip)

    @jobs(name="hot")
    def hot() -> None:
        pass

    cold("no")
    cold("yes")
    hot()
    assert [e.sampled for e in out] == ["", "tag:vip=yes", "sample"]


def test_unsampled_runs_can_ship_nothing():
    jobs, out = make(SamplingPolicy(every=0, index_unsampled=False))

    @jobs
    def job() -> None:
        with trace("x"):
            pass

    job()
    assert out == []


def test_nested_runs_link_child_to_parent_and_log_lifecycle():
    jobs, out = make()

    @jobs
    def child() -> None:
        raise RuntimeError("x")

    @jobs
    def parent() -> None:
        with pytest.raises(RuntimeError):
            child()

    parent()
    kid, mom = out
    assert kid.parent_id == mom.id and mom.parent_id == ""
    assert [e.event for e in kid.events] == ["started", "failed"]
    assert kid.events[-1].detail == "RuntimeError"
    assert [e.event for e in mom.events] == ["started", "finished"]


def test_flushing_the_job_tracker_flushes_the_trace_shipper_too():
    class Flushable(Shipped):
        flushed = 0

        def flush(self, timeout: float) -> bool:
            self.flushed += 1
            return True

    out = Flushable()
    jobs = JobTracker(NoMetrics(), "event::job", traces=TraceRecorder(out))
    assert jobs.flush(1) is True
    assert out.flushed == 1  # e.g. Celery's worker_process_shutdown in a prefork child
