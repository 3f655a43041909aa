"""The queue health sampler against a real redis-server and the real frameworks' clients."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis import Redis

from tally.embedded.redis_server import start_redis
from tally.ingest.jobs.testing import RecordingTracker
from tally.sampler.probes import probe_arq, probe_celery, probe_dramatiq, probe_rq
from tally.sampler.service import SamplerSettings, from_args, sample_all, track

from .conftest import wait_for

pytestmark = pytest.mark.integration

JOBS = """
import time

def stuck():
    time.sleep(120)
"""


@pytest.fixture
def redis_url(tmp_path: Path):
    with start_redis(tmp_path / "redis") as server:
        yield server.url


def test_rq_backlog_grows_and_a_stuck_worker_is_stalled(redis_url, tmp_path):
    from rq import Queue

    (tmp_path / "sampler_jobs.py").write_text(JOBS)
    redis = Redis.from_url(redis_url)
    queue = Queue("default", connection=redis)
    for _ in range(3):
        queue.enqueue("sampler_jobs.stuck")
    first = probe_rq(redis, "default", stall_after_s=1)
    assert (first.depth, first.busy, first.idle, first.stalled) == (3, 0, 0, 0)
    time.sleep(1.2)
    later = probe_rq(redis, "default", stall_after_s=1)
    assert later.depth == 3 and later.oldest_age_s > first.oldest_age_s + 1  # getting older
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    worker = subprocess.Popen(
        [str(Path(sys.executable).parent / "rq"), "worker", "--url", redis_url, "default"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(lambda: probe_rq(redis, "default", 1).busy == 1, 60, "the worker to be busy")
        wait_for(lambda: probe_rq(redis, "default", 1).stalled == 1, 30, "a stalled worker")
        sample = probe_rq(redis, "default", stall_after_s=1)
        assert sample.depth == 2 and sample.idle == 0
        assert probe_rq(redis, "default", stall_after_s=600).stalled == 0  # below threshold
    finally:
        os.killpg(worker.pid, 9)
        worker.wait(10)


def test_celery_dramatiq_and_arq_queues_show_depth_and_oldest_age(redis_url):
    import dramatiq
    from celery import Celery
    from dramatiq.brokers.redis import RedisBroker

    from tally.ingest.jobs import instrument_celery

    app = Celery("sampled", broker=redis_url)
    instrument_celery(app, RecordingTracker())  # stamps tally_enqueued_at on publish
    for _ in range(4):
        app.send_task("sampled.work", queue="celery")
    broker = RedisBroker(url=redis_url)

    @dramatiq.actor(broker=broker, queue_name="reports")
    def report() -> None:  # never run here: nothing consumes the queue
        pass

    for _ in range(2):
        report.send()
    redis = Redis.from_url(redis_url)
    now_ms = time.time() * 1000
    redis.zadd("arq:queue", {"a": now_ms - 5_000, "b": now_ms - 2_000, "later": now_ms + 60_000})
    redis.set("arq:in-progress:a", "1")
    time.sleep(0.3)

    celery = probe_celery(redis, "celery", stall_after_s=60)
    assert celery.depth == 4 and 0.3 <= celery.oldest_age_s < 30
    reports = probe_dramatiq(redis, "reports", stall_after_s=60)
    assert reports.depth == 2 and 0.3 <= reports.oldest_age_s < 30
    arq = probe_arq(redis, "arq:queue", stall_after_s=60)
    assert (arq.depth, arq.busy) == (1, 1) and 2 <= arq.oldest_age_s < 30

    settings = SamplerSettings(
        redis_url, (("celery", "celery"), ("dramatiq", "reports"), ("arq", "arq:queue"))
    )
    recorder = RecordingTracker()
    assert track(recorder, sample_all(redis, settings), time.time()) == 3
    flat = {c.keys[-1]: c.flat for c in recorder.calls}
    assert flat["event::queue::celery::celery"]["depth"] == 4
    assert flat["event::queue::dramatiq::reports"]["depth"] == 2
    assert flat["event::queue::arq::arq:queue"]["workers.busy"] == 1


def test_settings_from_flags_and_environment():
    settings = from_args(
        ["--queue", "rq:default", "--queue", "arq:arq:queue", "--interval", "5"],
        {"TALLY_SAMPLER_REDIS_URL": "redis://r:6379/1"},
    )
    assert settings.queues == (("rq", "default"), ("arq", "arq:queue"))
    assert settings.interval_s == 5 and settings.redis_url == "redis://r:6379/1"
    assert from_args([], {"TALLY_SAMPLER_QUEUES": "celery:celery,dramatiq:default"}).queues == (
        ("celery", "celery"),
        ("dramatiq", "default"),
    )
    assert from_args([], {}).interval_s == 10
    with pytest.raises(SystemExit):
        from_args(["--queue", "sidekiq:default"], {})


CELERY_APP = """
import time
from celery import Celery

app = Celery("stuckapp", broker="{url}")


@app.task(name="stuckapp.stuck")
def stuck():
    time.sleep(120)
"""


def test_a_celery_worker_stuck_in_a_task_is_busy_then_stalled(redis_url, tmp_path):
    (tmp_path / "stuckapp.py").write_text(CELERY_APP.format(url=redis_url))
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    worker = subprocess.Popen(
        [str(Path(sys.executable).parent / "celery"), "-A", "stuckapp", "worker",
         "--pool", "threads", "-c", "1", "-Q", "celery", "--without-gossip", "--without-mingle"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    redis = Redis.from_url(redis_url)
    try:
        wait_for(lambda: probe_celery(redis, "celery", 1).idle == 1, 60, "an idle worker")
        from celery import Celery

        Celery("client", broker=redis_url).send_task("stuckapp.stuck", queue="celery")
        wait_for(lambda: probe_celery(redis, "celery", 1).busy == 1, 30, "the worker busy")
        wait_for(lambda: probe_celery(redis, "celery", 1).stalled == 1, 30, "a stalled worker")
        assert probe_celery(redis, "celery", stall_after_s=600).stalled == 0
    finally:
        os.killpg(worker.pid, 9)
        worker.wait(10)
