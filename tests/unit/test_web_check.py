"""Dashboard paths matching nothing the key wrote, with the closest known paths."""

from __future__ import annotations

from tally.web.check import UnknownPath, unknown_paths

KNOWN = ["amount.count", "amount.sum", "codes.a", "codes.b", "count"]


def test_a_typo_gets_the_closest_paths_and_known_paths_pass():
    found = unknown_paths(["amount.summ", "amount.sum", "codes.*", "count"], [], KNOWN)
    assert found == [UnknownPath("amount.summ", "amount.summ", ["amount.sum", "amount.count"])]


def test_wildcards_match_one_segment_and_expressions_name_their_row():
    found = unknown_paths(["codes.*.x", "nothing.*"], ["100 * amount.sum / countt"], KNOWN)
    assert [(u.row, u.path) for u in found] == [
        ("codes.*.x", "codes.*.x"),
        ("nothing.*", "nothing.*"),
        ("100 * amount.sum / countt", "countt"),
    ]
    assert found[2].suggestions[0] == "count"


def test_a_key_with_no_paths_flags_nothing():
    assert unknown_paths(["amount.summ"], [], []) == []
