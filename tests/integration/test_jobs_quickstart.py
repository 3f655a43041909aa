"""docs/jobs.md's quickstart, run as written for each framework.

Each framework runs in ``.venvs/<framework>`` (only its extra installed) against a real
Kafka + aggregator + ClickHouse (with a password) and a Debian redis-server, all started here.
The stack's ``export`` lines run through bash with ``TALLY_DATA_DIR`` holding the password
file as ``tally up`` writes it; the worker command, ``enqueue.py`` and ``query.py`` run as
written, and ``query.py`` must print the output the doc shows.
"""

from __future__ import annotations

import os
import secrets

import pytest

from tally.embedded.redis_server import start_redis

from .jobs_quickstart import app_env, exported, poll_output, quickstart, run, start, stop

pytestmark = pytest.mark.integration
FRAMEWORKS = ("celery", "rq", "arq", "dramatiq")


def test_the_quickstart_has_every_framework_and_the_shared_blocks():
    for framework in FRAMEWORKS:
        qs = quickstart(framework)
        assert {"pricing.py", "query.py", "enqueue.py"} <= set(qs.files)
        assert qs.worker and qs.stack and len(qs.output) == 10


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_quickstart_runs_as_written(framework, make_stack, tmp_path):
    qs = quickstart(framework)
    password = secrets.token_urlsafe(12)
    stack = make_stack(
        partitions=2,
        aggregators=1,
        flush_interval_s=0.5,
        clickhouse_user="default",
        clickhouse_password=password,
    )
    redis = start_redis(tmp_path / "redis")
    data_dir = tmp_path / "tally-data"
    (data_dir / "secrets").mkdir(parents=True)
    (data_dir / "secrets" / "clickhouse-password").write_text(password + "\n")
    app = tmp_path / "app"
    app.mkdir()
    for name, code in qs.files.items():
        (app / name).write_text(code)

    base = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")}
    base["TALLY_DATA_DIR"] = str(data_dir)
    variables = exported(qs.stack, base)
    assert variables == {"TALLY_CLICKHOUSE_PASSWORD": password}
    env = app_env(framework, base)
    env.update(variables)
    # the stack's ports are free ones, not tally up's defaults: the doc says to export these
    env["TALLY_KAFKA_BOOTSTRAP"] = stack.kafka.bootstrap
    env["TALLY_CLICKHOUSE_URL"] = stack.clickhouse.url
    env["REDIS_URL"] = f"{redis.url}/0"

    worker = start(qs.worker, app, env, tmp_path / "worker.log")
    try:
        run(["python", "enqueue.py"], app, env)
        lines = poll_output(["python", "query.py"], app, env, qs.output, timeout=180)
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
    finally:
        stop(worker)
        redis.stop()
    assert lines == qs.output, (tmp_path / "worker.log").read_text()[-3000:]
