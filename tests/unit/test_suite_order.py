"""`make test` starts the longest test files first (issue #21.21): the slow fault files, one to
three tests each, used to come last and leave one worker running them alone for minutes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import EXPECTED_S, TESTS, pytest_collection_modifyitems

ROOT = TESTS.parent


@dataclass
class Collected:
    """What the hook reads of a collected test: its file."""

    path: Path


def test_every_timed_file_exists():
    missing = [name for name in EXPECTED_S if not (TESTS / name).is_file()]
    assert not missing, f"renamed or removed: update tests/conftest.py EXPECTED_S: {missing}"


def test_the_longest_files_come_first_and_the_rest_keep_their_order():
    unit = [Collected(TESTS / "unit" / f"test_{n}.py") for n in ("b", "a", "c")]
    outages = Collected(TESTS / "integration" / "test_faults_outages.py")
    kill9 = Collected(TESTS / "integration" / "test_faults_kill9.py")
    items = [unit[0], kill9, unit[1], outages, unit[2], kill9]
    pytest_collection_modifyitems(None, items)  # type: ignore[arg-type]
    assert items == [outages, kill9, kill9, *unit]


def test_make_test_keeps_that_order_with_two_workers_by_file():
    recipe = (ROOT / "Makefile").read_text().split("\ntest:", 1)[1].split("\n\n", 1)[0]
    command = next(line for line in recipe.splitlines() if "pytest" in line)
    assert re.search(r"-n 2 --dist loadfile --no-loadscope-reorder\b", command), command
