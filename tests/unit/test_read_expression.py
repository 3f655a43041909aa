"""The expression parser: arithmetic, precedence, nulls, and rejections (never eval)."""

from __future__ import annotations

import re

import pytest

from tally.read.errors import BadExpression, BadPattern, BadRange
from tally.read.expression import parse
from tally.read.patterns import KeyPattern, PathWildcard
from tally.read.timerange import window
from tally.schemas.granularity import Calendar


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("a + b * c", {"a": 1, "b": 2, "c": 3}, 7),
        ("(a + b) * c", {"a": 1, "b": 2, "c": 3}, 9),
        ("a - b - c", {"a": 10, "b": 2, "c": 3}, 5),
        ("a / b / c", {"a": 12, "b": 2, "c": 3}, 2),
        ("-a + 2", {"a": 5}, -3),
        ("--a", {"a": 5}, 5),
        ("success / count", {"success": 1, "count": 0}, None),
        ("x / (a - a)", {"x": 1, "a": 3}, None),
        ("sqrt(a)", {"a": -1}, None),
        ("sqrt(a)", {"a": 16}, 4),
        ("pow(a, 2) + abs(b)", {"a": 3, "b": -1}, 10),
        ("min(a, b, 7)", {"a": 9, "b": 8}, 7),
        ("max(a, missing)", {"a": 9}, 9),
        ("mean(a, b)", {"a": 1, "b": 2}, 1.5),
        ("sum(a, b, 1e3)", {"a": 1, "b": 2}, 1003),
        ("coalesce(x / y, 0)", {"x": 1, "y": 0}, 0),
        ("duration.sum / duration.count", {"duration.sum": 30, "duration.count": 3}, 10),
        ("`codes.not-found` * 2", {"codes.not-found": 4}, 8),
        ("missing + 1", {}, None),
        ("pow(a, 5000)", {"a": 10}, None),
        ("a * .5", {"a": 4}, 2),
        ("sum(1e308, 1e308)", {}, None),  # overflows: null, like 1e308 * 10
        ("mean(1e308, 1e308)", {}, None),
        ("-" * 50 + "a", {"a": 5}, 5),
    ],
)
def test_evaluates(text, env, expected):
    assert parse(text).evaluate(env) == expected


def test_paths_are_listed_once_in_order():
    e = parse("sqrt(d.square / d.count - pow(d.sum / d.count, 2))")
    assert e.paths == ("d.square", "d.count", "d.sum")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("a +", "unexpected end"),
        ("(a", "expected ')'"),
        ("a)", "unexpected ')'"),
        ("a b", "unexpected 'b' at position 2"),
        ("a ** b", "unexpected '*'"),
        ("__import__(os)", "unknown function"),
        ("a[0]", "unexpected character"),
        ("open('x')", "unexpected character"),
        ("codes.* / count", "wildcards"),
        ("sqrt()", "unexpected"),
        ("pow(a)", "takes 2"),
        ("a; b", "unexpected character ';'"),
        ("(" * 60 + "a" + ")" * 60, "deeper"),
        ("a" * 1001, "longer than"),
        ("-" * 999 + "1", "more than 50 minus signs"),
        ("1e999 + a", "too large"),
    ],
)
def test_rejects_with_reason(text, reason):
    with pytest.raises(BadExpression, match=re.escape(reason)):
        parse(text)


def test_key_pattern_escapes_like_metacharacters():
    p = KeyPattern.parse("calc_%::*")
    assert p.like == "calc\\_\\%::%" and p.prefix == "calc_%::"
    assert KeyPattern.parse(None).like == "%"
    with pytest.raises(BadPattern):
        KeyPattern.parse("a\x00")


def test_path_wildcard_matches_one_segment():
    w = PathWildcard.parse("tenants.*.count")
    assert re.match(w.regex, "tenants.a.count") and not re.match(w.regex, "tenants.a.b.count")
    assert w.other_name == "tenants.(other).count"
    with pytest.raises(BadPattern):
        PathWildcard.parse("codes..x")


def test_window_counts_buckets_on_the_calendar():
    w = window(Calendar("Europe/Prague"), "1d", since=1774652400, until=1774908000)
    assert len(w.buckets) == 3 and w.buckets[2] - w.buckets[1] == 23 * 3600
    with pytest.raises(BadRange, match="duration"):
        window(Calendar(), "1h", since="5 days")
    assert window(Calendar(), "1h", since="24h", now=7200.0 + 86400).buckets[0] == 7200
