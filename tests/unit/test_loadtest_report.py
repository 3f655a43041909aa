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


def test_parts_summary_rates_maxima_and_first_too_many_parts():
    from tally.loadtest.parts import PartsSample, summarize

    def s(t, inserts, new, active, errors=0):
        return PartsSample(
            t, {"InsertQuery": inserts, "DelayedInserts": 0, "RejectedInserts": 0},
            {"rollups": new}, {"rollups": new // 2}, {"rollups": active}, {"rollups": active},
            1, errors,
        )  # fmt: skip

    samples = [s(0, 0, 0, 5), s(3, 30, 90, 40), s(6, 60, 180, 80, 2), s(9, 90, 270, 20, 2)]
    out = summarize(samples, {"parts_to_throw_insert": 3000}, 0, 9)
    assert out["inserts_per_s"] == 10 and out["new_parts_per_s"] == {"rollups": 30}
    assert out["active_parts_max"] == {"rollups": 80} and out["fullest_partition_max"] == 80
    assert out["too_many_parts_errors"] == 2 and out["first_too_many_parts_s"] == 6
    assert len(out["timeline"]) == 3 and out["timeline"][0]["inserts_per_s"] == 10
