"""The pre-flattened fast path sends exactly what the nested ``track`` call would."""

from __future__ import annotations

import socket

import pytest

from tally.ingest import ClientSettings, InvalidValues, Tracker
from tally.ingest.flatten import flatten
from tally.ingest.jobs.run import event_values
from tally.ingest.jobs.tracking import JobTracker
from tally.schemas.limits import Limits


class FlatRecorder:
    def __init__(self) -> None:
        self.flat: list[tuple] = []
        self.nested: list[tuple] = []
        self.kinds: list = []

    def track(self, keys, values, at=None, route=None) -> bool:
        self.nested.append((tuple(keys), values))
        return True

    def track_flat(self, keys, paths, numbers, at=None, route=None, kinds=None) -> bool:
        self.flat.append((tuple(keys), paths, numbers))
        self.kinds.append(kinds)
        return True


def test_emit_uses_track_flat_with_the_same_paths_and_numbers():
    recorder = FlatRecorder()
    jobs = JobTracker(recorder, key="event::schedule")

    @jobs(tenant="acme")
    def schedule() -> None:
        from tally.ingest.jobs import current_run

        current_run().add_resources(7)

    schedule()
    schedule()
    assert not recorder.nested and len(recorder.flat) == 2
    keys, paths, numbers = recorder.flat[0]
    assert keys == ("event::schedule", "event::schedule::acme")
    job = next(p.split(".")[1] for p in paths if p.startswith("jobs."))
    nested = {"count": 1, "resources": 7}
    assert dict(zip(paths, numbers, strict=True))["tenants.acme.resources"] == 7
    want_paths, _ = flatten(event_values(job, "acme", {**nested}), Limits())
    assert set(want_paths) <= set(paths)
    assert recorder.flat[1][1] is paths  # the fanned-out shape is cached
    dists, gauges = recorder.kinds[0]
    assert [p for p, _ in dists] == [
        "total.duration",
        f"jobs.{job}.duration",
        "tenants.acme.duration",
    ] and gauges == []


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_track_flat_validates_like_track():
    tracker = Tracker(
        ClientSettings(bootstrap_servers=closed_port(), strict=True, close_timeout_s=0.2)
    )
    assert tracker.track_flat("k", ("a", "b.c"), [1, 2.5])
    for paths, numbers, reason in [
        (("a", "a..b"), [1, 2], "bad_path"),
        (("a",), [1, 2], "values_shape_mismatch"),
        (("a",), [float("nan")], "not_finite"),
        (("a",), ["1"], "non_numeric"),
        (("a",), [True], "non_numeric"),
        (("a",), [2**60], "huge_value"),
    ]:
        with pytest.raises(InvalidValues, match=reason):
            tracker.track_flat("k", paths, numbers)
    assert tracker.stats().accepted == 1 and tracker.stats().invalid == 6
    tracker.close()
