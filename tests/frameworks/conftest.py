"""Framework hook tests, each file run in the virtualenv that has only its framework's extra.

``make test-frameworks`` runs ``tests/frameworks/test_<name>.py`` with
``.venvs/<name>/bin/python`` and ``TALLY_FRAMEWORK=<name>``. The main test run (whose
virtualenv cannot hold arq and Celery together: they need different redis-py majors) does
not collect these files; each framework's tests run exactly once, in its own environment.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from collections.abc import Iterator

import pytest

from tally.embedded.redis_server import EmbeddedRedis, start_redis
from tally.ingest.jobs.testing import TrackCall

FRAMEWORKS = ("celery", "rq", "arq", "dramatiq")
FRAMEWORK = os.environ.get("TALLY_FRAMEWORK", "")
collect_ignore_glob = [f"test_{f}.py" for f in FRAMEWORKS if f != FRAMEWORK]


def assert_only_framework(name: str) -> None:
    """The environment has ``name`` and none of the other frameworks."""
    assert name == FRAMEWORK
    installed = {f for f in FRAMEWORKS if importlib.util.find_spec(f) is not None}
    assert installed == {name}


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A throwaway Debian redis-server on a free 127.0.0.1 port."""
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()
    assert not server.running


def total(call: TrackCall) -> dict[str, int | float]:
    """The ``total.*`` paths of one call, without the prefix."""
    return {k[len("total.") :]: v for k, v in call.flat.items() if k.startswith("total.")}


def by_job(calls: list[TrackCall]) -> dict[str, list[dict]]:
    """Each job's calls (as ``total``), in order."""
    out: dict[str, list[dict]] = {}
    for call in calls:
        (job,) = call.values["jobs"]  # type: ignore[call-overload]
        out.setdefault(job, []).append(total(call))
    return out


class Shipped:
    """An in-memory, thread-safe trace shipper: the executions a recorder shipped."""

    def __init__(self) -> None:
        self.executions: list = []
        self._lock = threading.Lock()

    def ship(self, execution: object) -> bool:
        with self._lock:
            self.executions.append(execution)
        return True

    def wait(self, n: int, timeout: float) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.executions) >= n:
                    return list(self.executions)
            time.sleep(0.05)
        raise AssertionError(f"{len(self.executions)} executions, wanted {n}")


class PaymentDeclined(Exception):
    """What the issue's worker log showed: ``card declined for order 100296``."""


DECLINED = "card declined for order 100296"
CARD_TOKEN = "tok_live_4242_secret"


def charge(order: int, card_token: str) -> None:
    """The failing payment job body shared by the framework tests."""
    raise PaymentDeclined(f"card declined for order {order}")


def assert_retry_then_failure(runs: list[dict], error: str) -> None:
    """One meaning of "retry" in every framework: attempts 1 and 2 are ``retry``, the third
    (after which the framework gives up) is ``failure``; ``retries`` counts the re-runs."""
    assert [(r.get("state.retry", 0), r.get("state.failure", 0)) for r in runs] == [
        (1, 0), (1, 0), (0, 1),
    ]  # fmt: skip
    assert [r["attempt"] for r in runs] == [1, 2, 3]
    assert all(r[f"errors.{error}"] == 1 for r in runs)
    assert sum(r["retries"] for r in runs) == sum(r.get("state.retry", 0) for r in runs) == 2


def assert_declined_execution(execution, ref: str) -> None:
    """A failed execution carries the message, a traceback through ``charge``, the
    framework's job id and the (redacted) arguments."""
    assert execution.error == "PaymentDeclined"
    assert execution.message == DECLINED
    assert execution.traceback.startswith("Traceback (most recent call last):")
    assert f"PaymentDeclined: {DECLINED}" in execution.traceback
    assert "in charge\n" in execution.traceback
    assert execution.ref == ref and ref
    started = execution.events[0]
    assert started.event == "started" and "100296" in started.args
    assert '"card_token":"[redacted]"' in started.args and CARD_TOKEN not in started.args
