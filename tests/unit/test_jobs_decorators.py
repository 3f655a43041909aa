"""The decorator and context manager: states, propagation, tenants, isolation from failures."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from tally.ingest import ClientSettings, InvalidValues, Tracker
from tally.ingest.jobs import JobTracker, Run, Trackable, active_run, current_run
from tally.ingest.jobs.testing import RecordingTracker


class LockBusy(Exception):
    pass


class NothingToDo(Exception):
    pass


def tracked(**kw) -> tuple[JobTracker, RecordingTracker]:
    recorder = RecordingTracker()
    return JobTracker(recorder, key="event::job", **kw), recorder


def only(recorder: RecordingTracker) -> dict:
    [call] = recorder.calls
    return call.flat


def test_a_successful_run_is_one_call_fanned_out_to_global_and_tenant_keys():
    jobs, recorder = tracked()

    @jobs(name="billing.SyncInvoice", tenant=lambda tenant, invoice: tenant)
    def sync(tenant: str, invoice: int) -> int:
        current_run().add_resources(2)
        return invoice * 10

    assert sync("acme", 4) == 40
    [call] = recorder.calls
    assert call.keys == ("event::job", "event::job::acme")
    assert call.at is None and call.route is None  # the client picks now and the tenant key
    flat = call.flat
    for prefix in ("total", "jobs.billing__sync_invoice", "tenants.acme"):
        assert flat[f"{prefix}.count"] == 1
        assert flat[f"{prefix}.state.success"] == 1
        assert flat[f"{prefix}.resources"] == 2
        assert flat[f"{prefix}.duration.count"] == 1
    assert sync.tally_job == "billing__sync_invoice"
    assert sync.__name__ == "sync"


def test_the_jobs_own_exception_propagates_unchanged_and_is_counted_by_type():
    jobs, recorder = tracked()
    error = KeyError("missing")

    @jobs
    def boom() -> None:
        raise error

    with pytest.raises(KeyError) as raised:
        boom()
    assert raised.value is error
    flat = only(recorder)
    assert flat["total.state.failure"] == 1 and flat["total.errors.KeyError"] == 1
    assert "total.state.success" not in flat
    assert flat["tenants.system.count"] == 1


def test_named_exception_types_mean_limited_or_skipped():
    jobs, recorder = tracked(limited=(LockBusy,), skipped=(NothingToDo,))

    @jobs
    def locked() -> None:
        raise LockBusy

    @jobs
    def idle() -> None:
        raise NothingToDo

    with pytest.raises(LockBusy):
        locked()
    with pytest.raises(NothingToDo):
        idle()
    first, second = (c.flat for c in recorder.calls)
    assert first["total.state.limited"] == 1 and "total.errors.LockBusy" not in first
    assert second["total.state.skipped"] == 1


def test_the_job_reports_skipped_states_and_codes_through_the_run():
    jobs, recorder = tracked()

    @jobs(pass_run=True)
    def calculate(target: int, run: Run) -> None:
        if target == 0:
            run.skip()
        else:
            run.result(state="duplicate", code="OUT_OF_STOCK")
            run.resources += 1

    calculate(0)
    calculate(1)
    skipped, duplicate = (c.flat for c in recorder.calls)
    assert skipped["total.state.skipped"] == 1
    assert duplicate["total.state.duplicate"] == 1
    assert duplicate["total.codes.OUT_OF_STOCK"] == 1 and duplicate["total.resources"] == 1


def test_duration_is_whole_milliseconds_of_the_job():
    jobs, recorder = tracked()

    @jobs
    def slow() -> None:
        time.sleep(0.03)

    slow()
    flat = only(recorder)
    duration = flat["total.duration.sum"]
    assert isinstance(duration, int) and duration >= 30
    assert flat["total.duration.square"] == duration * duration


def test_context_manager_measures_the_block_and_lets_errors_through():
    jobs, recorder = tracked()
    with jobs.run("billing.cron.ScheduleInvoicesJob") as run:
        run.add_resources(3)
        assert current_run() is run
    with pytest.raises(ValueError), jobs.run("billing.cron.ScheduleInvoicesJob", "acme"):
        raise ValueError
    ok, failed = (c.flat for c in recorder.calls)
    assert ok["jobs.billing__cron__schedule_invoices_job.resources"] == 3
    assert failed["tenants.acme.errors.ValueError"] == 1
    assert active_run() is None


def test_current_run_outside_a_job_is_a_detached_run():
    run = current_run()
    run.add_resources(5)  # harmless
    assert active_run() is None and current_run() is not run


def test_a_run_inside_a_framework_run_inherits_lag_and_attempt():
    jobs, recorder = tracked()

    @jobs
    def inner() -> None:
        pass

    with jobs.run("framework_task", due_at=time.time() - 2.0, attempt=3):  # like a hook
        inner()
    inner_call, outer_call = recorder.calls
    assert outer_call.values["jobs"].keys() == {"framework_task"}
    for flat in (inner_call.flat, outer_call.flat):
        assert flat["total.attempt"] == 3 and flat["total.retries"] == 1
        assert 2_000 <= flat["total.queue_lag.sum"] < 10_000
    for call in (inner_call, outer_call):
        lag = call.dists["total.queue_lag"]
        assert lag.count == 1 and 2_000 <= lag.vmin == lag.vmax < 10_000


async def test_async_jobs_and_concurrent_tasks_keep_their_own_runs():
    jobs, recorder = tracked()

    @jobs(tenant=lambda tenant, n: tenant)
    async def schedule(tenant: str, n: int) -> str:
        for _ in range(n):
            await asyncio.sleep(0)
            current_run().add_resources(1)
        return tenant

    assert await asyncio.gather(schedule("a", 3), schedule("b", 5)) == ["a", "b"]

    async with jobs.run("manual", "c") as run:
        await asyncio.sleep(0)
        run.add_resources(7)

    @jobs
    async def broken() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("x")

    with pytest.raises(RuntimeError):
        await broken()
    resources = {tuple(c.values["tenants"]): c.flat["total.resources"] for c in recorder.calls}
    assert resources == {("a",): 3, ("b",): 5, ("c",): 7, ("system",): 0}
    assert recorder.calls[-1].flat["total.errors.RuntimeError"] == 1


def test_threads_keep_their_own_runs():
    jobs, recorder = tracked()

    @jobs(tenant=lambda n: f"t{n}")
    def work(n: int) -> None:
        for _ in range(n):
            current_run().add_resources(1)
            time.sleep(0.001)

    threads = [threading.Thread(target=work, args=(n,)) for n in (1, 2, 3, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = {next(iter(c.values["tenants"])): c.flat["total.resources"] for c in recorder.calls}
    assert got == {"t1": 1, "t2": 2, "t3": 3, "t4": 4}


class Exploding:
    """A tracker that raises (like a strict client rejecting an event)."""

    def __init__(self) -> None:
        self.calls = 0

    def track(self, keys, values, at=None, route=None) -> bool:
        self.calls += 1
        raise InvalidValues("non_numeric", "boom")


def test_instrumentation_failures_never_reach_the_job():
    tracker = Exploding()
    jobs = JobTracker(tracker, limited=("not a type",))  # type: ignore[arg-type]

    def bad_tenant(*args):
        raise LookupError("no tenant")

    @jobs(tenant=bad_tenant)
    def job() -> str:
        return "done"

    @jobs
    def failing() -> None:
        raise OSError

    assert job() == "done"
    with pytest.raises(OSError):
        failing()  # classify() trips over the bad ``limited``: counted, the job error wins
    assert tracker.calls == 1  # the first run reached the tracker, which raised
    assert jobs.errors == 3  # tenant, track, finish


def test_generator_jobs_are_refused_at_decoration():
    jobs, _ = tracked()
    with pytest.raises(TypeError):

        @jobs
        def gen():
            yield 1


def test_cron_style_trackers_write_only_the_global_key():
    recorder = RecordingTracker()
    jobs = JobTracker(recorder, key="event::cron", tenant_keys=False)
    with jobs.run("billing.cron.ScheduleInvoicesJob"):
        pass
    assert recorder.calls[0].keys == ("event::cron",)


def test_the_real_tracker_is_the_default_trackable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tracker = Tracker(ClientSettings(bootstrap_servers=f"127.0.0.1:{port}", close_timeout_s=0.2))
    assert isinstance(tracker, Trackable) and isinstance(RecordingTracker(), Trackable)
    jobs = JobTracker(tracker, key="event::schedule")

    @jobs(tenant="acme")
    def schedule() -> None:
        current_run().add_resources(4)

    for _ in range(3):
        schedule()
    assert tracker.stats().accepted == 3 and tracker.stats().invalid == 0
    assert jobs.errors == 0
    tracker.close()
