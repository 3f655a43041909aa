"""Framework hook pieces that need no broker: lazy imports, settings copies, lag sources."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from tally.ingest.jobs.testing import RecordingTracker


def test_the_client_and_job_core_do_not_import_any_framework():
    code = (
        "import sys, tally.ingest, tally.ingest.jobs as j; "
        "j.JobTracker; j.JobFlow; "
        "print(sorted(m for m in ('celery', 'rq', 'arq', 'dramatiq', 'redis') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_framework_hooks_are_reachable_from_the_package():
    import tally.ingest.jobs as jobs

    assert callable(jobs.instrument_celery) and callable(jobs.instrument_arq)
    assert callable(jobs.instrumented_rq_worker) and isinstance(jobs.TallyMiddleware, type)


def test_celery_due_time_is_the_later_of_publish_and_eta():
    from tally.ingest.jobs.celery import _due_at

    now = time.time()
    eta = datetime.fromtimestamp(now + 5, UTC)
    assert _due_at(SimpleNamespace(tally_enqueued_at=now, eta=None)) == now
    assert _due_at(SimpleNamespace(tally_enqueued_at=now, eta=eta.isoformat())) == eta.timestamp()
    assert _due_at(SimpleNamespace(eta="not a date")) is None
    assert _due_at(SimpleNamespace()) is None  # published without the header: no lag


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


def test_dramatiq_due_time_prefers_the_latest_stamp():
    from tally.ingest.jobs.dramatiq import TallyMiddleware

    recorder = RecordingTracker()
    middleware = TallyMiddleware(recorder, tenant=lambda t: t)
    now_ms = int(time.time() * 1000)
    message = SimpleNamespace(
        message_id="m1",
        actor_name="sync_invoice",
        args=("acme",),
        kwargs={},
        failed=False,
        message_timestamp=now_ms - 60_000,
        options={"retries": 1, "requeue_timestamp": now_ms - 2_000, "eta": now_ms - 1_500},
    )
    middleware.before_process_message(None, message)
    middleware.after_process_message(None, message, exception=ValueError("x"))
    flat = recorder.calls[0].flat
    assert 1_500 <= flat["total.queue_lag.sum"] < 10_000  # from the eta, not the first send
    assert flat["total.attempt"] == 2 and flat["tenants.acme.errors.ValueError"] == 1
