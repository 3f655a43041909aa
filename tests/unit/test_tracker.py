"""Client behaviour that needs no broker: validation, strict mode, bounds, never blocking."""

from __future__ import annotations

import math
import os
import socket
import time

import pytest

from tally.ingest import ClientSettings, InvalidValues, Tracker


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def settings(**kw) -> ClientSettings:
    kw.setdefault("close_timeout_s", 0.5)
    return ClientSettings(bootstrap_servers=closed_port(), **kw)


def test_invalid_events_are_counted_not_raised():
    tracker = Tracker(settings())
    assert tracker.track("k", {"a": "x"}) is False
    assert tracker.track("k", {"a": math.nan}) is False
    assert tracker.track("", {"a": 1}) is False
    assert tracker.track([], {"a": 1}) is False
    assert tracker.track("k", {"a": 1}, at="yesterday") is False  # type: ignore[arg-type]
    stats = tracker.stats()
    assert stats.invalid == 5 and stats.accepted == 0
    tracker.close()


def test_strict_mode_raises_with_the_reason():
    tracker = Tracker(settings(strict=True))
    with pytest.raises(InvalidValues, match="non_numeric"):
        tracker.track("k", {"a": {"b": "x"}})
    tracker.close()


def test_naive_datetimes_are_rejected():
    from datetime import datetime

    tracker = Tracker(settings(strict=True))
    with pytest.raises(InvalidValues, match="naive_datetime"):
        tracker.track("k", {"a": 1}, at=datetime(2026, 1, 1))
    tracker.close()


def test_track_does_not_block_when_the_broker_is_unreachable():
    tracker = Tracker(settings(buffer_events=1_000_000))
    started = time.perf_counter()
    for i in range(20_000):
        assert tracker.track(["a", f"a::{i % 10}"], {"count": 1, "d": {"sum": i}})
    elapsed = time.perf_counter() - started
    # Generous bound: 20k calls that waited on the network even once would take far longer.
    assert elapsed < 10
    assert tracker.stats().accepted == 20_000
    tracker.close()


def test_overflow_policy_drops_newest_and_counts():
    tracker = Tracker(settings(buffer_events=100))
    results = [tracker.track("k", {"n": 1}) for _ in range(250)]
    stats = tracker.stats()
    assert results.count(True) == stats.accepted
    assert stats.dropped_overflow == 250 - stats.accepted
    assert stats.accepted <= 100 + 10  # the sender may not drain without a broker
    tracker.close()


def test_close_without_a_broker_counts_what_it_could_not_deliver():
    tracker = Tracker(settings())
    for _ in range(10):
        tracker.track("k", {"n": 1})
    tracker.close()
    stats = tracker.stats()
    assert stats.dropped_overflow == 10 and stats.sent_events == 0


def test_flush_times_out_instead_of_hanging_without_a_broker():
    tracker = Tracker(settings())
    tracker.track("k", {"n": 1})
    started = time.monotonic()
    assert tracker.flush(timeout=0.5) is False
    assert time.monotonic() - started < 5
    tracker.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_forked_child_starts_empty_and_does_not_resend_the_parents_buffer():
    tracker = Tracker(settings(buffer_events=1000))
    for _ in range(5):
        tracker.track("k", {"n": 1})
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        child = tracker.stats()
        os.write(write, f"{child.buffered}".encode())
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 100) == b"0"
    tracker.close()


def test_never_connected_client_spools_instead_of_dropping(tmp_path):
    tracker = Tracker(settings(buffer_events=4_000, spool_dir=tmp_path / "spool", linger_ms=10))
    for i in range(20_000):
        assert tracker.track("k", {"n": 1})
        if i % 500 == 0:
            time.sleep(0.02)
    tracker.close()
    stats = tracker.stats()
    assert stats.dropped_overflow == 0 and stats.dropped_spool_full == 0
    assert stats.spooled_records >= 10
    assert len(list((tmp_path / "spool").rglob("*.rec"))) == stats.spooled_records


def test_spool_full_is_counted_not_silent(tmp_path):
    tracker = Tracker(
        settings(buffer_events=2_000, spool_dir=tmp_path / "spool", spool_bytes=2_000, linger_ms=10)
    )
    for i in range(10_000):
        tracker.track("k", {"n": 1})
        if i % 500 == 0:
            time.sleep(0.02)
    tracker.close()
    stats = tracker.stats()
    assert stats.dropped_spool_full > 0
    assert stats.accepted == 10_000 - stats.dropped_overflow
