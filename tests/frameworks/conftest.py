"""Framework hook tests, each file run in the virtualenv that has only its framework's extra.

``make test-frameworks`` runs ``tests/frameworks/test_<name>.py`` with
``.venvs/<name>/bin/python`` and ``TALLY_FRAMEWORK=<name>``. The main test run (whose
virtualenv cannot hold arq and Celery together: they need different redis-py majors) does
not collect these files; each framework's tests run exactly once, in its own environment.
"""

from __future__ import annotations

import importlib.util
import os
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
