"""The folders show the flow: no import circles, no import from a folder to a higher one."""

from __future__ import annotations

from tally.loadtest import imports


def test_no_import_circles() -> None:
    assert imports.circles(imports.graph()) == []


def test_no_upward_imports() -> None:
    assert imports.upward(imports.graph()) == []


def test_every_folder_has_its_layer() -> None:
    assert imports.unranked(imports.graph()) == []


def test_the_script_sees_a_circle_and_an_upward_arrow() -> None:
    edges = {
        "tally.schemas.a": {"tally.cli.b"},
        "tally.cli.b": {"tally.schemas.a"},
        "tally.cli.c": {"tally.schemas.a"},
    }
    assert imports.circles(edges) == [["tally.cli.b", "tally.schemas.a"]]
    assert imports.upward(edges) == [("tally.schemas.a", "tally.cli.b")]
