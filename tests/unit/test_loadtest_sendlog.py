from collections import Counter

from tally.loadtest.exactness import Expected
from tally.loadtest.producer import quota
from tally.loadtest.scenarios import EVENT_MARKERS, Scenario, scaled
from tally.loadtest.sendlog import SendLog, merge_totals
from tally.loadtest.workloads import Cardinality
from tally.schemas.granularity import Calendar

T0 = 1_763_596_800  # 2025-11-20 00:00:00 UTC
GRANULARITIES = ("1m", "1h", "1d")


def test_counts_follow_runs_with_wrap_and_full_cycles():
    log = SendLog(pool_size=5)
    log.sent(T0, 3, 4)  # indices 3, 4, 0, 1
    log.sent(T0, 2, 11)  # two full cycles plus index 2
    log.sent(T0 + 60, 0, 2)
    log.refuse(T0, 4)
    counts = log.counts()
    assert counts[T0] == [3, 3, 3, 3, 2]
    assert counts[T0 + 60] == [1, 1, 0, 0, 0]
    assert log.events == 4 + 11 + 2 - 1


def test_expected_from_the_log_equals_adding_every_event():
    scenario = Scenario(cardinality=Cardinality(10, 3, 50, 4), pool=300, seed=3)
    templates = scenario.templates(0)
    calendar = Calendar("UTC")
    log = SendLog(len(templates))
    one_by_one = Expected(calendar, GRANULARITIES)
    index = 0
    for minute, n in ((T0, 250), (T0 + 60, 700), (T0 + 3600, 40)):
        log.sent(minute, index, n)
        for _ in range(n):
            if index == 7:
                log.refuse(minute, index)
            else:
                t = templates[index]
                one_by_one.add(t.__class__(t.keys, t.values, minute + 30, t.route))
            index = (index + 1) % len(templates)
    compact = log.expected(templates, calendar, GRANULARITIES)
    assert compact.totals == one_by_one.totals
    assert compact.events == one_by_one.events == log.events


def test_every_workload_event_adds_one_to_exactly_one_marker():
    for name in ("mixed", "calculations", "refresh", "scheduling"):
        for template in Scenario(name=name, pool=2_000).templates(1):
            expected = Expected(Calendar("UTC"), ("1m",))
            expected.add(template)
            hits = [expected.totals.get(("1m", k, 0, p), 0) for k, p in EVENT_MARKERS]
            assert sorted(hits) == [0, 0, 0, 1], (name, template)


def test_scaled_multiplies_every_leaf():
    assert scaled({"a": 2, "b": {"c": -3, "d": {"e": 0}}}, 4) == {
        "a": 8,
        "b": {"c": -12, "d": {"e": 0}},
    }


def test_merge_keeps_negative_and_zero_sums():
    merged = merge_totals([Counter({"a": -5, "b": 1}), Counter({"a": 2, "b": -1, "c": 0})])
    assert merged == Counter({"a": -3, "b": 0, "c": 0}) and set(merged) == {"a", "b", "c"}


def test_quotas_split_the_total_exactly():
    for total in (0, 1, 7, 20_000, 20_001.9):
        for producers in (1, 2, 3, 7):
            shares = [quota(total, producers, i) for i in range(producers)]
            assert sum(shares) == int(total) and max(shares) - min(shares) <= 1
