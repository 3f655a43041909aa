from tally.loadtest.freshness import Probe, percentile
from tally.loadtest.monitor import Sample
from tally.loadtest.report import rates


def test_percentile_is_nearest_rank():
    values = sorted(float(i) for i in range(1, 101))
    assert percentile(values, 0.5) == 50 and percentile(values, 0.99) == 99
    assert percentile(values, 1.0) == 100 and percentile([], 0.5) is None


def test_unseen_probes_have_no_freshness():
    assert Probe(1, 10.0).freshness_s is None
    assert Probe(2, 10.0, 11.5).freshness_s == 1.5


def test_rates_come_from_cumulative_counters_at_interval_middles():
    samples = [
        Sample(0.0, 100, 0, 0, 0, 5, {"aggregators": {"cpu_pct": 10.0, "rss_mb": 50.0}}),
        Sample(1.0, 100, 120, 100, 40, 7, {"aggregators": {"cpu_pct": 30.0, "rss_mb": 52.0}}),
        Sample(3.0, 100, 320, 300, None, None),
    ]
    rows = rates(samples)
    assert "produced_rate" not in rows[0]
    assert rows[1]["produced_rate"] == 120 and rows[1]["aggregated_rate"] == 40
    assert rows[1]["t_mid"] == 0.5 and rows[1]["aggregators_cpu_pct"] == 30.0
    assert rows[2]["produced_rate"] == 100 and "aggregated_rate" not in rows[2]
