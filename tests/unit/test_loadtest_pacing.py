import pytest

from tally.loadtest.pacing import RateProfile, Schedule


def test_steady_rate_integrates_to_rate_times_duration():
    s = Schedule(RateProfile(rate=1_000, duration_s=10))
    assert s.total == pytest.approx(10_000)
    assert s.due(2.5) == pytest.approx(2_500)
    assert s.due(-1) == 0 and s.due(99) == s.total


def test_ramp_is_linear_then_steady():
    s = Schedule(RateProfile(rate=1_000, duration_s=10, ramp_s=4))
    assert s.due(2) == pytest.approx(0.5 * 2 * 500)  # triangle under the ramp
    assert s.due(4) == pytest.approx(2_000)
    assert s.total == pytest.approx(2_000 + 6 * 1_000)


def test_bursts_multiply_the_rate_in_their_windows():
    p = RateProfile(rate=100, duration_s=30, burst_factor=10, burst_every_s=10, burst_length_s=2)
    assert not p.in_burst(5) and p.in_burst(10) and p.in_burst(11.9) and not p.in_burst(12)
    assert p.rate_at(21) == 1_000 and p.rate_at(25) == 100
    s = Schedule(p)
    assert s.total == pytest.approx(30 * 100 + 2 * 2 * 900)
    assert s.due(11) == pytest.approx(1_000 + 1_000)


def test_due_is_monotonic_and_consistent_with_rate():
    p = RateProfile(rate=500, duration_s=20, ramp_s=3, burst_factor=4, burst_every_s=7,
                    burst_length_s=1.5)  # fmt: skip
    s = Schedule(p)
    previous = 0.0
    for i in range(1, 2_000):
        t = i / 100
        due = s.due(t)
        assert due >= previous
        dt = 1e-4
        if not any(abs(t - b) < 2 * dt for b in p.breakpoints()):
            assert (s.due(t + dt) - s.due(t - dt)) / (2 * dt) == pytest.approx(
                p.rate_at(t), rel=1e-3
            )
        previous = due


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate": 0, "duration_s": 1},
        {"rate": 1, "duration_s": 0},
        {"rate": 1, "duration_s": 1, "ramp_s": -1},
        {"rate": 1, "duration_s": 9, "burst_factor": 2, "burst_every_s": 2, "burst_length_s": 2},
    ],
)
def test_invalid_profiles_are_rejected(kwargs):
    with pytest.raises(ValueError):
        RateProfile(**kwargs)
