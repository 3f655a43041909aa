"""Framework hooks against the real frameworks and a real redis-server broker.

One redis-server for the module (each framework uses its own database number). The
recording tracker stands in for the client, so every assertion is about what the hook
measured: state, error type, tenant, resources, queue lag and attempt.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tally.embedded.redis_server import EmbeddedRedis, start_redis
from tally.ingest.jobs import current_run
from tally.ingest.jobs.testing import RecordingTracker, TrackCall

pytestmark = pytest.mark.integration


class LockBusy(Exception):
    """A tenant lock was held: the run is ``limited``."""


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()
    assert not server.running


def total(call: TrackCall) -> dict[str, int | float]:
    return {k[len("total.") :]: v for k, v in call.flat.items() if k.startswith("total.")}


def by_job(calls: list[TrackCall]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for call in calls:
        (job,) = call.values["jobs"]  # type: ignore[call-overload]
        out.setdefault(job, []).append(total(call))
    return out


def test_embedded_redis_answers(redis_server):
    import redis

    client = redis.Redis.from_url(redis_server.url)
    assert client.ping() is True
    assert client.config_get("save")["save"] == ""


# --------------------------------------------------------------------------- celery


def celery_app(url: str):
    """A Celery app on the redis broker.

    The project pins redis-py 5.3.1 (arq 0.28 needs < 6), while kombu 5.7's redis transport
    refuses redis-py < 6.1 at connect time. This test-only transport skips that version check;
    the instrumentation itself never touches the transport.
    """
    import redis
    from celery import Celery
    from kombu.transport import redis as kombu_redis

    class AnyRedisPyChannel(kombu_redis.Channel):
        def _get_client(self):
            return redis.Redis

    class Transport(kombu_redis.Transport):
        Channel = AnyRedisPyChannel

    app = Celery("tally_jobs_test", broker=f"{url}/1", set_as_current=False)
    app.conf.broker_transport = Transport
    app.conf.broker_connection_retry_on_startup = True
    app.conf.worker_hijack_root_logger = False
    return app


def test_celery_signals_measure_state_lag_and_retries(redis_server):
    from celery.contrib.testing.worker import start_worker

    from tally.ingest.jobs import instrument_celery

    app = celery_app(redis_server.url)
    recorder = RecordingTracker()
    hooks = instrument_celery(
        app, recorder, key="event::celery", tenant=lambda t, *_: t, limited=(LockBusy,)
    )

    @app.task(name="billing.tasks.SyncInvoice")
    def sync_invoice(tenant: str, invoices: int) -> int:
        current_run().add_resources(invoices)
        return invoices

    @app.task(name="billing.tasks.boom")
    def boom(tenant: str) -> None:
        raise KeyError(tenant)

    @app.task(name="billing.tasks.locked", bind=True, max_retries=2)
    def locked(self, tenant: str) -> str:
        if self.request.retries == 0:
            raise self.retry(exc=LockBusy(), countdown=0.3)
        return "ok"

    try:
        sync_invoice.delay("acme", 3)  # published before the worker runs: it waits >= 0.4 s
        time.sleep(0.4)
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
            boom.delay("acme")
            locked.delay("beta")
            calls = recorder.wait(4, timeout=30)
    finally:
        hooks.disconnect()

    jobs = by_job(calls)
    [ok] = jobs["billing__tasks__sync_invoice"]
    assert ok["state.success"] == 1 and ok["resources"] == 3
    assert ok["queue_lag.sum"] >= 400 and ok["queue_lag.count"] == 1
    assert ok["attempt"] == 1 and ok["retries"] == 0
    [failed] = jobs["billing__tasks__boom"]
    assert failed["state.failure"] == 1 and failed["errors.KeyError"] == 1
    first, second = jobs["billing__tasks__locked"]
    assert first["state.limited"] == 1 and "errors.LockBusy" not in first
    assert second["state.success"] == 1
    assert (second["attempt"], second["retries"]) == (2, 1)
    # the retry was due at its ETA (0.3 s after the retry), so its lag is measured from there
    assert second["queue_lag.sum"] < 300
    tenants = {c.keys[1] for c in calls}
    assert tenants == {"event::celery::acme", "event::celery::beta"}
    assert hooks.jobs.errors == 0


# --------------------------------------------------------------------------- rq


def rq_invoice(tenant: str, invoices: int) -> int:
    current_run().add_resources(invoices)
    return invoices


def rq_flaky(tenant: str) -> str:
    from rq import get_current_job

    if get_current_job().retries_left == 2:  # the first of Retry(max=2)
        raise LockBusy(tenant)
    return "ok"


def rq_again(tenant: str):
    from rq import Retry, get_current_job

    if not get_current_job().number_of_retries:
        return Retry(max=1)  # RQ 2+: a job may ask to be retried by returning Retry
    return "ok"


def rq_boom(tenant: str) -> None:
    raise ZeroDivisionError(tenant)


def test_rq_simple_worker_measures_lag_state_and_retries(redis_server):
    import redis
    from rq import Queue, Retry

    from tally.ingest.jobs import instrumented_rq_worker

    connection = redis.Redis.from_url(f"{redis_server.url}/2")
    queue = Queue("tally-simple", connection=connection)
    queue.enqueue(rq_invoice, "acme", 5)
    queue.enqueue(rq_boom, "acme")
    queue.enqueue(rq_flaky, "beta", retry=Retry(max=2))
    queue.enqueue(rq_again, "beta")
    time.sleep(0.3)
    recorder = RecordingTracker()
    worker = instrumented_rq_worker(
        [queue],
        recorder,
        key="event::rq",
        tenant=lambda tenant, *_: tenant,
        limited=(LockBusy,),
        connection=connection,
    )
    worker.work(burst=True, with_scheduler=False)
    calls = recorder.wait(6, timeout=10)

    jobs = by_job(calls)
    prefix = "tests__integration__test_jobs_frameworks__"
    asked, retried = jobs[prefix + "rq_again"]
    assert asked["state.retry"] == 1 and "errors.Retry" not in asked
    assert retried["state.success"] == 1 and retried["attempt"] == 2
    [ok] = jobs[prefix + "rq_invoice"]
    assert ok["state.success"] == 1 and ok["resources"] == 5
    assert ok["queue_lag.sum"] >= 300 and ok["attempt"] == 1
    [failed] = jobs[prefix + "rq_boom"]
    assert failed["state.failure"] == 1 and failed["errors.ZeroDivisionError"] == 1
    first, second = jobs[prefix + "rq_flaky"]
    assert first["state.limited"] == 1
    assert second["state.success"] == 1 and (second["attempt"], second["retries"]) == (2, 1)
    assert {c.keys[1] for c in calls} == {"event::rq::acme", "event::rq::beta"}


class FileTracker:
    """Appends each event as a JSON line: survives the forked work horse's ``os._exit``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def track(self, keys, values, at=None, route=None) -> bool:
        line = json.dumps({"pid": os.getpid(), "keys": list(keys), "values": values})
        with self._lock, self.path.open("a") as fh:
            fh.write(line + "\n")
        return True

    def flush(self, timeout: float = 0.0) -> bool:
        with self._lock, self.path.open("a") as fh:
            fh.write(json.dumps({"pid": os.getpid(), "flushed": True}) + "\n")
        return True


def test_rq_forking_worker_tracks_in_the_horse_and_flushes_before_exit(redis_server, tmp_path):
    import redis
    from rq import Queue, Worker

    from tally.ingest.jobs import instrumented_rq_worker

    connection = redis.Redis.from_url(f"{redis_server.url}/2")
    queue = Queue("tally-fork", connection=connection)
    queue.enqueue(rq_invoice, "acme", 2)
    out = tmp_path / "events.jsonl"
    worker = instrumented_rq_worker(
        [queue], FileTracker(out), key="event::rq", worker_class=Worker, connection=connection
    )
    worker.work(burst=True, with_scheduler=False)

    lines = [json.loads(line) for line in out.read_text().splitlines()]
    events = [line for line in lines if "keys" in line]
    flushes = [line for line in lines if line.get("flushed")]
    assert len(events) == 1 and events[0]["pid"] != os.getpid()  # tracked in the horse
    assert events[0]["values"]["total"]["resources"] == 2
    assert [f["pid"] for f in flushes] == [events[0]["pid"]]  # and flushed there


# --------------------------------------------------------------------------- arq


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


@pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning")  # arq
async def test_arq_settings_wrapper_measures_lag_state_and_tries(redis_server):
    import asyncio

    from arq import create_pool
    from arq.connections import RedisSettings
    from arq.worker import create_worker, func

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
        worker = create_worker(settings, burst=True, poll_delay=0.05, handle_signals=False)
        try:
            await worker.main()
        finally:
            await worker.close()
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


# --------------------------------------------------------------------------- dramatiq


def test_dramatiq_middleware_measures_lag_state_skips_and_retries(redis_server):
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    from tally.ingest.jobs import TallyMiddleware

    broker = RedisBroker(url=f"{redis_server.url}/4")
    recorder = RecordingTracker()
    broker.add_middleware(
        TallyMiddleware(recorder, key="event::dramatiq", tenant=lambda t, *_: t, limited=())
    )
    attempts: dict[str, int] = {}

    @dramatiq.actor(broker=broker, actor_name="sync_invoice")
    def sync_invoice(tenant: str, invoices: int) -> None:
        current_run().add_resources(invoices)

    @dramatiq.actor(broker=broker, actor_name="flaky", max_retries=2, min_backoff=50)
    def flaky(tenant: str) -> None:
        attempts[tenant] = attempts.get(tenant, 0) + 1
        if attempts[tenant] == 1:
            raise TimeoutError(tenant)

    @dramatiq.actor(broker=broker, actor_name="stale", max_age=100)
    def stale(tenant: str) -> None:
        raise AssertionError("a message past its max_age must not run")

    sync_invoice.send("acme", 4)
    stale.send("acme")
    flaky.send("beta")
    time.sleep(0.3)
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=50)
    worker.start()
    try:
        calls = recorder.wait(4, timeout=20)
    finally:
        worker.stop()
        broker.close()

    jobs = by_job(calls)
    [ok] = jobs["sync_invoice"]
    assert ok["state.success"] == 1 and ok["resources"] == 4
    assert ok["queue_lag.sum"] >= 300 and ok["attempt"] == 1
    [skipped] = jobs["stale"]
    assert skipped["state.skipped"] == 1
    first, second = jobs["flaky"]
    assert first["state.failure"] == 1 and first["errors.TimeoutError"] == 1
    assert first["queue_lag.sum"] >= 300
    assert second["state.success"] == 1 and (second["attempt"], second["retries"]) == (2, 1)
    assert second["queue_lag.sum"] < 300  # due at its retry's eta, not at the first send
