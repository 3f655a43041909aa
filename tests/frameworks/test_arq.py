"""The arq hook against real arq and a real redis-server; runs in ``.venvs/arq`` (the ``arq``
extra, whose redis-py < 6 is why arq cannot share an environment with Celery)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from tally.ingest.jobs import JobFlow, current_run, report_result
from tally.ingest.jobs.testing import RecordingTracker

from .conftest import (
    CARD_TOKEN,
    DECLINED,
    assert_declined_execution,
    assert_only_framework,
    by_job,
    charge,
)
from .conftest import (
    Shipped as SharedShipped,
)


class Shipped:
    """An in-memory trace shipper: the executions the recorder shipped."""

    def __init__(self) -> None:
        self.executions: list = []

    def ship(self, execution: object) -> bool:
        self.executions.append(execution)
        return True

    def wait(self, n: int, timeout: float) -> list:
        deadline = time.monotonic() + timeout
        while len(self.executions) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.executions) >= n, f"{len(self.executions)} executions, wanted {n}"
        return list(self.executions)


pytestmark = pytest.mark.integration


def test_the_environment_has_arq_only():
    assert_only_framework("arq")


async def arq_invoice(ctx: dict, tenant: str, invoices: int) -> int:
    current_run().add_resources(invoices)
    return invoices


async def arq_flaky(ctx: dict, tenant: str) -> str:
    from arq import Retry

    if ctx["job_try"] == 1:
        raise Retry(defer=0.05)
    return "ok"


async def arq_boom(ctx: dict, tenant: str) -> None:
    raise LookupError(tenant)


async def run_burst(settings) -> None:
    from arq.worker import create_worker

    worker = create_worker(settings, burst=True, poll_delay=0.05, handle_signals=False)
    try:
        await worker.main()
    finally:
        await worker.close()


@pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning")  # arq
async def test_arq_settings_wrapper_measures_lag_state_and_tries(redis_server):
    from arq import create_pool
    from arq.connections import RedisSettings
    from arq.worker import func

    from tally.ingest.jobs import instrument_arq

    class WorkerSettings:
        functions = [arq_invoice, func(arq_flaky, name="flaky", max_tries=3), arq_boom]
        redis_settings = RedisSettings.from_dsn(f"{redis_server.url}/3")

    recorder = RecordingTracker()
    settings = instrument_arq(
        WorkerSettings, recorder, key="event::arq", tenant=lambda tenant, *_: tenant
    )
    assert settings.redis_settings is WorkerSettings.redis_settings
    pool = await create_pool(settings.redis_settings)
    try:
        await pool.enqueue_job("arq_invoice", "acme", 7)
        await pool.enqueue_job("arq_invoice", "acme", 1, _defer_by=0.5)
        await pool.enqueue_job("flaky", "beta")
        await pool.enqueue_job("arq_boom", "beta")
        await asyncio.sleep(0.3)
        await run_burst(settings)
    finally:
        await pool.aclose()

    jobs = by_job(recorder.wait(5, timeout=10))
    immediate, deferred = sorted(jobs["arq_invoice"], key=lambda v: -v["resources"])
    assert immediate["state.success"] == 1 and immediate["resources"] == 7
    assert immediate["queue_lag.sum"] >= 300  # waited for the worker
    assert deferred["queue_lag.sum"] < 300  # measured from its due time (the score)
    retried, succeeded = jobs["flaky"]
    assert retried["state.retry"] == 1 and retried["errors.Retry"] == 1
    assert (succeeded["attempt"], succeeded["retries"]) == (2, 1)
    [failed] = jobs["arq_boom"]
    assert failed["state.failure"] == 1 and failed["errors.LookupError"] == 1


async def arq_charge(ctx: dict, order: int, card_token: str) -> None:
    from arq import Retry

    if ctx["job_try"] < 3:
        raise Retry(defer=0.01)
    charge(order, card_token)


async def arq_always_retry(ctx: dict, order: int) -> None:
    from arq import Retry

    raise Retry(defer=0.01)


@pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning")  # arq
async def test_arq_retried_attempts_are_retry_the_last_failure_with_message_and_traceback(
    redis_server,
):
    """arq re-runs a job that raised ``Retry`` while its try < ``max_tries``: a ``Retry`` on
    the last try is the final ``failure`` (arq will not run it again; issue #19 item 6); a
    failed run carries the exception's message, traceback, the job id and the redacted
    arguments (item 2)."""
    from arq import create_pool
    from arq.connections import RedisSettings
    from arq.worker import func

    from tally.ingest.jobs import instrument_arq
    from tally.traces import SamplingPolicy, TraceRecorder

    class WorkerSettings:
        functions = [arq_charge, func(arq_always_retry, name="always_retry", max_tries=2)]
        redis_settings = RedisSettings.from_dsn(f"{redis_server.url}/6")
        max_tries = 3

    recorder, shipped = RecordingTracker(), SharedShipped()
    traces = TraceRecorder(shipped, SamplingPolicy(every=1))
    settings = instrument_arq(WorkerSettings, recorder, key="event::arq", traces=traces)
    pool = await create_pool(settings.redis_settings)
    try:
        job = await pool.enqueue_job("arq_charge", 100296, card_token=CARD_TOKEN)
        await pool.enqueue_job("always_retry", 7)
        await run_burst(settings)
    finally:
        await pool.aclose()

    jobs = by_job(recorder.wait(5, timeout=30))
    states = [(r.get("state.retry", 0), r.get("state.failure", 0)) for r in jobs["arq_charge"]]
    assert states == [(1, 0), (1, 0), (0, 1)]
    assert [r["attempt"] for r in jobs["arq_charge"]] == [1, 2, 3]
    assert sum(r["retries"] for r in jobs["arq_charge"]) == 2
    retried, last = jobs["always_retry"]
    assert retried["state.retry"] == 1 and retried["errors.Retry"] == 1
    assert last["state.failure"] == 1 and last["errors.Retry"] == 1 and last["attempt"] == 2
    executions = shipped.wait(5, timeout=30)
    charged = [e for e in executions if e.job == "arq_charge"]
    assert [e.state for e in charged] == ["retry", "retry", "failure"]
    assert_declined_execution(charged[-1], job.job_id)
    assert charged[0].message.startswith("<Retry defer") and DECLINED not in charged[0].message


RECORDER = RecordingTracker()
FLOW = JobFlow(RECORDER)


@FLOW.resource(name="calc.CalculateJob", tenant=lambda ctx, tenant, n: tenant)
async def arq_calculate(ctx: dict, tenant: str, n: int) -> None:
    if n == 0:
        return current_run().skip()
    report_result(code="OK")
    current_run().add_resources(n)


@pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning")  # arq
async def test_a_decorated_function_under_the_hook_is_one_run(redis_server):
    from arq import create_pool
    from arq.connections import RedisSettings

    from tally.ingest.jobs import instrument_arq

    class WorkerSettings:
        functions = [arq_calculate]
        redis_settings = RedisSettings.from_dsn(f"{redis_server.url}/5")

    settings = instrument_arq(WorkerSettings, RECORDER, tenant=lambda first, *_: "wrong")
    pool = await create_pool(settings.redis_settings)
    try:
        await pool.enqueue_job("arq_calculate", "acme", 3)
        await pool.enqueue_job("arq_calculate", "acme", 0)
        await run_burst(settings)
    finally:
        await pool.aclose()
    calls = RECORDER.wait(2, timeout=10)
    await asyncio.sleep(0.2)
    assert len(RECORDER.calls) == 2
    states = sorted(
        next(k for k in v if k.startswith("state.")) for v in by_job(calls)["calc__calculate_job"]
    )
    assert states == ["state.skipped", "state.success"]
    assert {c.keys for c in calls} == {
        ("event::resource", "event::resource::acme", "event::job", "event::job::acme")
    }
    assert all(c.flat["total.attempt"] == 1 for c in calls)  # the hook's attempt, kept


def test_arq_due_time_is_the_later_of_enqueue_time_and_score():
    from tally.ingest.jobs.arq import _due_at

    enqueued = datetime(2026, 1, 1, tzinfo=UTC)
    later = enqueued + timedelta(seconds=30)
    ctx = {"enqueue_time": enqueued, "score": int(later.timestamp() * 1000)}
    assert _due_at(ctx) == later.timestamp()
    assert _due_at({"enqueue_time": enqueued}) == enqueued.timestamp()
    assert _due_at(None) is None


async def sample(ctx: dict, tenant: str) -> str:
    return tenant


def test_instrument_arq_copies_class_and_dict_settings():
    from arq.cron import cron

    from tally.ingest.jobs import instrument_arq

    class WorkerSettings:
        functions = [sample]
        cron_jobs = [cron(sample, minute=0, name="nightly")]
        max_jobs = 3

    recorder = RecordingTracker()
    copy = instrument_arq(WorkerSettings, recorder, key="event::arq")
    assert vars(copy)["max_jobs"] == 3  # arq reads only the class's own __dict__
    assert [f.name for f in copy.functions] == ["sample"]
    assert copy.cron_jobs[0].name == "nightly" and copy.cron_jobs[0].coroutine is not sample
    assert WorkerSettings.functions == [sample]  # the original is untouched
    as_dict = instrument_arq({"functions": [sample], "max_jobs": 2}, recorder)
    assert as_dict["max_jobs"] == 2 and as_dict["functions"][0].coroutine is not sample


async def test_arq_wrapper_tracks_one_run_with_try_and_lag():
    from arq.worker import func

    from tally.ingest.jobs import instrument_arq

    recorder = RecordingTracker()
    settings = instrument_arq({"functions": [func(sample, name="billing.Sample")]}, recorder)
    wrapped = settings["functions"][0].coroutine
    ctx = {"job_try": 2, "enqueue_time": datetime.now(UTC) - timedelta(seconds=3), "score": 0}
    assert await wrapped(ctx, "acme") == "acme"
    flat = recorder.calls[0].flat
    assert flat["jobs.billing__sample.attempt"] == 2 and flat["total.retries"] == 1
    assert 3_000 <= flat["total.queue_lag.sum"] < 10_000


def test_the_hook_is_reachable_from_the_package():
    import tally.ingest.jobs as jobs

    assert callable(jobs.instrument_arq) and "instrument_arq" in dir(jobs)


async def arq_schedule(ctx: dict, tenant: str) -> None:
    from tally.traces import trace

    with trace("enqueue resources"):
        for n in (1, 2):
            await ctx["redis"].enqueue_job("arq_resource", tenant, n=n)


async def arq_resource(ctx: dict, tenant: str, n: int) -> int:
    from arq import Retry

    if n == 1 and ctx["job_try"] == 1:
        raise Retry(defer=0.05)
    return n


@pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning")  # arq
async def test_a_job_enqueued_by_a_traced_arq_job_links_to_its_parent(redis_server):
    from arq import create_pool
    from arq.connections import RedisSettings

    from tally.ingest.jobs import instrument_arq
    from tally.traces import SamplingPolicy, TraceRecorder

    class WorkerSettings:
        functions = [arq_schedule, arq_resource]
        redis_settings = RedisSettings.from_dsn(f"{redis_server.url}/4")

    shipped = Shipped()
    recorder = TraceRecorder(shipped, SamplingPolicy(every=1))
    settings = instrument_arq(WorkerSettings, RecordingTracker(), traces=recorder)
    pool = await create_pool(settings.redis_settings)
    try:
        await pool.enqueue_job("arq_schedule", "acme")
        outside = await pool.enqueue_job("arq_resource", "beta", n=3)  # by no run: no parent
        await run_burst(settings)
        await asyncio.sleep(0.3)  # the retried job is deferred by 0.05 s
        await run_burst(settings)
        stored = await pool.keys("tally:parent:*")
    finally:
        await pool.aclose()

    executions = shipped.wait(5, timeout=10)
    parent = next(e for e in executions if e.job == "arq_schedule")
    kids = [e for e in executions if e.job == "arq_resource" and e.ref != outside.job_id]
    lone = next(e for e in executions if e.ref == outside.job_id)
    assert not parent.parent_id and not lone.parent_id
    # a retried job keeps its parent: the scheduler sees both attempts of the resource job
    assert {k.parent_id for k in kids} == {parent.id}
    assert sorted((k.state, k.attempt) for k in kids) == [
        ("retry", 1), ("success", 1), ("success", 2),
    ]  # fmt: skip
    assert len(stored) == 2  # one side key per linked job, none for the others
    enqueued = [e for e in parent.events if e.event == "enqueued"]
    assert sorted(e.ref for e in enqueued) == sorted({k.ref for k in kids})
    assert [e.job for e in enqueued] == ["arq_resource", "arq_resource"]
    assert enqueued[0].args == '[["acme"],{"n":1}]'
    assert all(k.events[0].attempt == k.attempt for k in kids)  # the job log's retry number
    started = kids[0].events[0]
    assert started.event == "started" and started.args.startswith('[["acme"],{"n":')
    assert [ln.name for ln in parent.lines] == ["enqueue resources"]
