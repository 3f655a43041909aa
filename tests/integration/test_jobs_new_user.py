"""A new user's Celery app and RQ worker, each in its own virtualenv, against the real stack.

The apps (tests/integration/new_user/) are instrumented exactly as docs/jobs.md's quickstart
says: ``Tracker(ClientSettings.from_env())``, the framework hook with a per-task tenant
mapping, and the ``JobFlow`` decorators inside the task decorators. Every calculation counts
its own outcome in Redis before it returns or raises. Every per-tenant state and result-code
count in ClickHouse must equal those counters, under the flow's key (``event::resource``) and
under the hook's (``event::job::<tenant>``) alike, and the cron must not be filed under a
tenant (its batch number).
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from tally.embedded.redis_server import EmbeddedRedis, start_redis
from tally.embedded.stack import Stack, StackConfig, start_stack
from tally.read.job_queries import JOB_QUERIES

from .conftest import wait_for
from .jobs_quickstart import app_env, run, start, stop

pytestmark = pytest.mark.integration
APPS = Path(__file__).parent / "new_user"
CALCULATE = "shop__calculate_job"
CELERY_TENANTS = ["c-acme", "c-globex", "c-initech", "c-umbrella"]
RQ_TENANTS = ["r-acme", "r-globex"]


@dataclass
class World:
    stack: Stack
    redis: EmbeddedRedis
    env: dict[str, str]
    tmp: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("new-user")
    password = secrets.token_urlsafe(12)
    config = StackConfig(
        partitions=4, aggregators=2, clickhouse_user="default", clickhouse_password=password
    )
    stack = start_stack(tmp / "stack", config)
    server = start_redis(tmp / "redis")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")}
    env.update(
        TALLY_KAFKA_BOOTSTRAP=stack.kafka.bootstrap,
        TALLY_CLICKHOUSE_URL=stack.clickhouse.url,
        TALLY_CLICKHOUSE_PASSWORD=password,
    )
    try:
        yield World(stack, server, env, tmp)
    finally:
        server.stop()
        stack.stop()


def clickhouse_counts(world: World, key: str, prefix: str, tenants: list[str]) -> dict[str, int]:
    """``<tenant>|state|<s>`` and ``<tenant>|code|<c>`` from ClickHouse, like the ``truth`` hash.

    ``prefix`` is ``tenants.<tenant>.`` (read under ``key``) or ``jobs.<job>.`` (read under
    ``key::<tenant>``, the hook's per-tenant keys).
    """
    client = world.stack.clickhouse_client()
    counts: dict[str, int] = {}
    for tenant in tenants:
        where_key, head = (
            (key, f"tenants.{tenant}.") if prefix == "tenants" else (f"{key}::{tenant}", prefix)
        )
        rows = client.query(
            "SELECT path, sum(value) FROM tally.rollups_1h WHERE key = {key:String} "
            "AND startsWith(path, {head:String}) GROUP BY path",
            parameters={"key": where_key, "head": head},
        ).result_rows
        for path, value in rows:
            kind, _, name = path[len(head) :].partition(".")
            if kind in ("state", "codes") and value:
                counts[f"{tenant}|{'state' if kind == 'state' else 'code'}|{name}"] = int(value)
    return counts


def play(world: World, framework: str, worker: str, enqueue: str, tenants: list[str], n: int):
    """Run the app's worker in its own venv, enqueue the cron, wait for every outcome."""
    app = world.tmp / framework
    app.mkdir()
    for path in APPS.glob(f"{framework}_*.py"):
        shutil.copy(path, app / path.name)
    db = {"celery": 1, "rq": 2}[framework]
    env = app_env(framework, world.env)
    env.update(
        REDIS_URL=f"{world.redis.url}/{db}", SHOP_TENANTS=",".join(tenants), SHOP_PER_TENANT=str(n)
    )
    truth = redis.Redis.from_url(env["REDIS_URL"], decode_responses=True)
    log = world.tmp / f"{framework}-worker.log"
    process = start(worker, app, env, log)
    try:
        run(["python", "-c", enqueue], app, env)
        total = len(tenants) * n

        def finished() -> bool:
            counts = truth.hgetall("truth")
            assert process.poll() is None, log.read_text()[-3000:]
            return sum(int(v) for k, v in counts.items() if "|state|" in k) == total

        wait_for(finished, 300, f"{total} {framework} calculations")
        client = world.stack.clickhouse_client()
        tracked = (
            "SELECT sum(value) FROM tally.rollups_1h WHERE key = 'event::resource' "
            "AND path IN arrayMap(t -> concat('tenants.', t, '.count'), {tenants:Array(String)})"
        )
        seen: list[float] = []

        def arrived() -> bool:
            seen.append(client.query(tracked, parameters={"tenants": tenants}).result_rows[0][0])
            return seen[-1] == total

        try:
            wait_for(arrived, 180, f"{total} {framework} runs in ClickHouse")
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}; last counts {seen[-3:]}\n{log.read_text()[-3000:]}"
            ) from exc
    finally:
        stop(process)
    return {k: int(v) for k, v in truth.hgetall("truth").items() if "|" in k}


def check(world: World, truth: dict[str, int], tenants: list[str]) -> None:
    assert any("|state|failure" in k for k in truth) and any("|code|" in k for k in truth)
    # the flow's key, per tenant
    assert clickhouse_counts(world, "event::resource", "tenants", tenants) == truth
    # the hook's per-tenant keys carry the very same runs, under the decorator's name
    assert clickhouse_counts(world, "event::job", f"jobs.{CALCULATE}.", tenants) == truth
    client = world.stack.clickhouse_client()
    keys = {
        row[0]
        for row in client.query(
            "SELECT DISTINCT key FROM tally.rollups_1h WHERE startsWith(key, 'event::job::')"
        ).result_rows
    }
    every_tenant = {f"event::job::{t}" for t in CELERY_TENANTS + RQ_TENANTS}
    assert {f"event::job::{t}" for t in tenants} <= keys <= every_tenant | {"event::job::system"}
    assert "event::job::7" not in keys  # the cron's batch number is no tenant
    # one name per job: the hook's key carries the decorators' names, never the task names
    names = {
        row[0]
        for row in client.query(
            "SELECT DISTINCT splitByChar('.', path)[2] FROM tally.rollups_1h "
            "WHERE key = 'event::job' AND startsWith(path, 'jobs.')"
        ).result_rows
    }
    decorated = {"shop__cron_job", "shop__schedule_job", CALCULATE}
    assert decorated <= names <= decorated | {"shop__audit", "rq_shop__audit"}
    # the documented queries answer the same
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    window = {"start": end - timedelta(hours=3), "end": end}
    codes = client.query(
        JOB_QUERIES["result_codes"].sql("tally", "1h"),
        parameters={**window, "key": "event::resource", "group": "tenants"},
    ).result_rows
    assert {f"{t}|code|{c}": int(n) for t, c, n, _ in codes if t in tenants} == {
        k: v for k, v in truth.items() if "|code|" in k
    }
    crons = client.query(
        JOB_QUERIES["cron_runs"].sql("tally", "1h"),
        parameters={**window, "key": "event::cron", "expected": 1, "jobs": []},
    ).result_rows
    assert {row[0] for row in crons} == {"shop__cron_job"} and sum(r[2] for r in crons) >= 1
    states = client.query(
        JOB_QUERIES["job_states"].sql("tally", "1h"),
        parameters={**window, "key": "event::resource", "group": "tenants"},
    ).result_rows
    for tenant, runs, success, failure, limited, skipped, retry, other, _ in states:
        if tenant not in tenants:
            continue

        def told(state: str, tenant: str = tenant) -> int:
            return truth.get(f"{tenant}|state|{state}", 0)

        assert (success, failure, limited, skipped, retry, other) == (
            told("success"),
            told("failure"),
            told("limited"),
            told("skipped"),
            0,
            told("duplicate"),
        )
        assert runs == sum(v for k, v in truth.items() if k.startswith(f"{tenant}|state|"))


def test_a_celery_app_in_its_own_venv_counts_exactly(world):
    tenants = CELERY_TENANTS
    truth = play(
        world,
        "celery",
        "celery -A celery_shop worker --concurrency 2 --loglevel WARNING",
        "from celery_shop import cron; cron.delay(7)",
        tenants,
        300,
    )
    check(world, truth, tenants)


def test_an_rq_worker_in_its_own_venv_counts_exactly(world):
    tenants = RQ_TENANTS
    truth = play(
        world,
        "rq",
        "python rq_worker.py",
        "from rq_shop import cron, queue; queue.enqueue(cron, 7)",
        tenants,
        100,
    )
    check(world, truth, tenants)
