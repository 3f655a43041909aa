"""The runnable examples in docs/jobs.md run and their own assertions hold."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "jobs.md"
BLOCK = re.compile(r"```python\n(# runnable example: (\w+)\n.*?)```", re.DOTALL)


def examples() -> dict[str, str]:
    return {name: code for code, name in BLOCK.findall(DOC.read_text())}


def test_the_doc_has_the_billing_and_commodity_examples():
    assert set(examples()) == {"billing", "commodity"}


@pytest.mark.parametrize("name", ["billing", "commodity"])
def test_runnable_example(name, monkeypatch):
    module = types.ModuleType(f"docs_example_{name}")  # dataclasses look their module up
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(examples()[name], f"docs/jobs.md:{name}", "exec"), module.__dict__)
    assert module.tracker.calls  # the example tracked something (and its asserts held)


def table_rows(heading: str) -> dict[str, list[str]]:
    """The rows of the first table after ``heading``: first cell (unquoted) -> the others."""
    text = DOC.read_text().split(heading, 1)[1]
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        if rows and not line.startswith("|"):
            break
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0].strip("`")] = cells[1:]
    return rows


def test_the_query_table_lists_every_job_query_with_its_parameters():
    from tally.read.job_queries import JOB_QUERIES

    rows = table_rows("| Query | Question | Parameters | Returns |")
    assert set(rows) == set(JOB_QUERIES)
    for name, query in JOB_QUERIES.items():
        documented = {p.strip() for p in rows[name][1].split(",")}
        assert documented == set(query.parameters()), name


def test_the_parameter_table_explains_every_job_query_parameter():
    from tally.read.job_queries import JOB_QUERIES

    rows = table_rows("| Parameter | Type | Meaning |")
    used = {p: t for q in JOB_QUERIES.values() for p, t in q.parameters().items()}
    assert {p: cells[0] for p, cells in rows.items()} == used


def test_every_client_variable_is_documented_in_the_docs_and_the_docstring():
    import re

    from tally.ingest import ClientSettings
    from tally.ingest.settings import KAFKA

    source = (DOC.parents[1] / "ingest" / "settings.py").read_text()
    read = {a or b for a, b in re.findall(r'env\.get\("(TALLY_\w+)"|env\["(TALLY_\w+)"\]', source)}
    read |= set(KAFKA.environment_names())
    documented = set(re.findall(r"^\| `(TALLY_\w+)` \|", DOC.read_text(), re.MULTILINE))
    assert len(read) >= 9 and read <= documented
    assert read <= set(re.findall(r"``(TALLY_\w+)``", ClientSettings.from_env.__doc__ or ""))
