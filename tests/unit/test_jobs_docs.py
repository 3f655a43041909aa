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
