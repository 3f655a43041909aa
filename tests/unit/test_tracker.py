"""Client behaviour that needs no broker: validation, strict mode, bounds, never blocking."""

from __future__ import annotations

import math
import os
import signal
import socket
import time

import msgspec
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


def _fork_children(count: int, body, timeout: float = 60) -> list[str]:
    """Run ``body()`` in ``count`` forked children; return what each wrote ("hung" if killed)."""
    results = []
    for _ in range(count):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            try:
                os.write(write, str(body()).encode())
            finally:
                os._exit(0)
        os.close(write)
        deadline = time.monotonic() + timeout
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.05)
        with os.fdopen(read, "rb") as fh:
            results.append(fh.read().decode() or "hung")
    return results


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_forked_child_starts_empty_and_does_not_resend_the_parents_buffer(tmp_path):
    spool = tmp_path / "spool"
    tracker = Tracker(settings(buffer_events=1000, spool_dir=spool))
    for _ in range(5):
        tracker.track("k", {"n": 1})

    def child() -> str:
        empty = tracker.stats().buffered
        for _ in range(10):
            tracker.track("k", {"n": 1})
        tracker.close()  # no broker: the child's events go to the child's own spool
        stats = tracker.stats()
        return f"{empty} {stats.spooled_records} {stats.internal_errors} {stats.dropped_overflow}"

    # Two children in a prefork pool: the parent's spool lock and source are not theirs.
    results = _fork_children(2, child)
    assert results == ["0 1 0 0", "0 1 0 0"]
    tracker.close()
    owners = [d for d in spool.iterdir() if d.is_dir() and not d.name.startswith(".")]
    # The parent kept its own directory; the second child adopted the first one's orphans.
    assert sorted(len(list(d.glob("*.rec"))) for d in owners) == [1, 2]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_counters_get_a_new_lock_after_fork():
    tracker = Tracker(settings())
    lock = tracker._counters._lock
    lock.acquire()  # another thread holds it at the moment of the fork
    try:
        results = _fork_children(
            1, lambda: tracker.track("k", {"n": "bad"}) or "survived", timeout=10
        )
    finally:
        lock.release()
    assert results == ["survived"]
    tracker.close()


def test_track_after_close_is_counted_and_refused():
    tracker = Tracker(settings())
    assert tracker.track("k", {"n": 1})
    tracker.close()
    assert tracker.track("k", {"n": 1}) is False
    assert tracker.track_flat("k", ("n",), [1]) is False
    stats = tracker.stats()
    assert stats.dropped_closed == 2
    assert stats.accepted == 1


def test_an_event_that_cannot_fit_a_record_is_rejected_and_counted():
    tracker = Tracker(settings(record_bytes=4096))
    wide = {f"v{i:04d}": i for i in range(600)}  # ~6 KB encoded: over the 4 KiB cap
    assert tracker.track("k", wide) is False
    assert tracker.track_flat("k", tuple(wide), list(wide.values())) is False
    assert tracker.track("k", {"v": 1}) is True
    stats = tracker.stats()
    assert stats.too_large == 2 and stats.accepted == 1 and stats.invalid == 0
    tracker.close()


def test_strict_mode_raises_for_an_event_too_large():
    tracker = Tracker(settings(record_bytes=4096, strict=True))
    with pytest.raises(InvalidValues, match="event_too_large"):
        tracker.track("k", {f"v{i:04d}": i for i in range(600)})
    tracker.close()


def test_the_size_bound_of_track_is_never_below_the_encoded_size():
    from tally.ingest.sizing import event_bound
    from tally.schemas.wire import BatchEncoder
    from tally.schemas.wire_columns import ColumnsEncoder

    source = "host:1:abcd"
    cases = [
        (("k",), ("a",), [1]),
        (("é" * 300, "k" * 256), tuple(f"p{i}.x" for i in range(1024)), [2**53] * 1024),
        (tuple(f"k{i}" for i in range(16)), ("a", "b"), [-1.5e300, 0.1]),
    ]
    for keys, paths, values in cases:
        bound = event_bound(source, keys, paths, len(values))
        for encoder in (BatchEncoder(source), ColumnsEncoder(source)):
            assert len(encoder.encode([(2**40, keys, paths, values)])) <= bound


def test_record_bytes_has_a_sane_floor():
    with pytest.raises(ValueError, match="record_bytes"):
        settings(record_bytes=10)


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
        tracker.track("k", {"n": 1}, at=1_700_000_000 + 60 * i)  # one a minute: nothing folds
        if i % 500 == 0:
            time.sleep(0.02)
    tracker.close()
    stats = tracker.stats()
    assert stats.dropped_spool_full > 0
    assert stats.accepted == 10_000 - stats.dropped_overflow


def test_text_that_is_not_utf8_is_refused_per_event_with_a_reason():
    bad = os.fsdecode(b"report-\xff")  # a lone surrogate: no UTF-8 encoder takes it
    tracker = Tracker(settings())
    assert tracker.track(f"calc::{bad}", {"count": 1}) is False
    assert tracker.track("calc", {bad: 1}) is False
    assert tracker.track_flat("calc", (f"p.{bad}",), [1]) is False
    assert tracker.track("calc", {"count": 1}, route=bad) is False
    assert tracker.track("calc", {"count": 1}, route=7) is False  # type: ignore[arg-type]
    assert tracker.track("calc", {"count": 1}) is True
    stats = tracker.stats()
    assert (stats.invalid, stats.internal_errors, stats.accepted) == (5, 0, 1)
    tracker.close()
    strict = Tracker(settings(strict=True))
    with pytest.raises(InvalidValues, match="invalid_text"):
        strict.track("calc", {bad: 1})
    strict.close()


def test_the_wire_version_is_a_setting():
    assert ClientSettings.from_env({"TALLY_WIRE_VERSION": "2"}).wire_version == 2
    with pytest.raises(ValueError, match="wire_version"):
        settings(wire_version=5)
    for version in (2, 4):
        tracker = Tracker(settings(wire_version=version))
        try:
            assert tracker.track("k", {"n": 1})
            payload = tracker.outbox._codec("s").encode(list(tracker.outbox.buffer))
            assert msgspec.msgpack.decode(payload)[0] == (1 if version == 2 else 4)
        finally:
            tracker.close(timeout=0.1)
