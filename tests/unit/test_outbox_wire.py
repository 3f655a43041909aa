"""Wire bytes of the metrics codec, against records captured from the client before the
typed-record outbox (tuple buffer, ``BatchEncoder`` picking V1/V2 by tuple length)."""

from __future__ import annotations

import msgspec
import pytest

from tally.ingest import ClientSettings, Dist, Tracker, dist, gauge
from tally.ingest.codec import MetricCodec
from tally.ingest.records import KindsRecord, MetricRecord

AT = 1_790_000_000
# Captured at b93ba97: ``MetricCodec("golden").encode`` of the first 3 / all 5 buffered events
# (the traces' golden record is in test_traces_wire.py).
GOLDEN_V1 = bytes.fromhex(
    "9601a6676f6c64656e96a463616c63aa63616c633a3a61636d65a772656672657368a5636f756e74ac647572"
    "6174696f6e2e73756daf6475726174696f6e2e737175617265929200019102929303040591039394ce6ab13b"
    "8000009301cb4029000000000000cb406388000000000094ce6ab13b810101910394ce6ab13b820000930102"
    "04"
)
GOLDEN_V2 = bytes.fromhex(
    "9602a6676f6c64656e9da36c6174a56465707468a6737072656164a463616c63aa63616c633a3a61636d65a7"
    "72656672657368a171a4713a3a78a5713a3ac3bca5636f756e74ac6475726174696f6e2e73756daf64757261"
    "74696f6e2e737175617265a16e9492030491059206079206089393090a0b9109910c9596ce6ab13b80000093"
    "01cb4029000000000000cb4063880000000000909096ce6ab13b8101019103909096ce6ab13b820000930102"
    "04909096ce6ab13b830201910191980001cb4028000000000000cb4062000000000000cb4028000000000000"
    "cb4028000000000000917d9101919301cb4045000000000000cf000001a0c4506c0096ce6ab13b84030291f9"
    "91980203cb4072f00000000000cb40f5f95000000000cb3ff0000000000000cb4072c00000000000930023cd"
    "011e9301010190"
)


def tracked() -> list[MetricRecord]:
    """The records ``Tracker.track`` buffers for five events (no broker: nothing is sent)."""
    tracker = Tracker(ClientSettings(bootstrap_servers="127.0.0.1:1", source="golden"))
    try:
        calls = [
            (
                ["calc", "calc::acme"],
                {"count": 1, "duration": {"sum": 12.5, "square": 156.25}},
                AT,
                None,
            ),
            ("refresh", {"count": 3}, AT + 1, "r"),
            (
                ["calc", "calc::acme"],
                {"count": 1, "duration": {"sum": 2, "square": 4}},
                AT + 2,
                None,
            ),
            (
                ["q", "q::x"],
                {"count": 1, "lat": dist(12.0), "depth": gauge(42, at=AT)},
                AT + 3,
                None,
            ),
            (
                ["q", "q::\u00fc"],
                {"n": -7, "spread": Dist.of([1.0, 2.0, 300.0])},
                AT + 4,
                "q::\u00fc",
            ),
        ]
        for keys, values, at, route in calls:
            assert tracker.track(keys, values, at, route)
        return list(tracker.outbox.buffer)
    finally:
        tracker.close(timeout=0.1)


def test_metric_records_encode_to_the_same_bytes_as_before():
    records = tracked()
    assert [type(r) for r in records] == [MetricRecord] * 3 + [KindsRecord] * 2
    assert [r.route for r in records] == ["calc::acme", "r", "calc::acme", "q::x", "q::\u00fc"]
    codec = MetricCodec("golden", wire_version=2)
    assert codec.encode(records[:3]) == GOLDEN_V1  # only MetricRecords: BatchV1
    assert codec.encode(records) == GOLDEN_V2  # any KindsRecord: BatchV2


def test_decoded_metric_records_encode_back_to_the_same_bytes():
    codec = MetricCodec("golden", wire_version=2)
    for golden in (GOLDEN_V1, GOLDEN_V2):
        assert codec.encode(codec.decode(golden)) == golden
    assert [r.route for r in codec.decode(GOLDEN_V2)] == [
        "calc::acme",
        "refresh",
        "calc::acme",
        "q::x",
        "q::\u00fc",
    ]


@pytest.mark.parametrize("version", [3, 4])
def test_versions_3_and_4_decode_back_to_the_same_records(version):
    records = tracked()
    codec = MetricCodec("golden", wire_version=version)
    payload = codec.encode(records)
    assert msgspec.msgpack.decode(payload)[0] == version
    back = codec.decode(payload)
    assert back == codec.decode(GOLDEN_V2)  # the same events as version 2 carries them
    assert codec.encode(back) == payload
    assert codec.decode(codec.encode(records[:3])) == codec.decode(GOLDEN_V1)


def test_version_2_is_the_default_and_version_4_smaller_than_version_3():
    records = tracked()
    default = MetricCodec("golden").encode(records)
    assert default == MetricCodec("golden", wire_version=2).encode(records) == GOLDEN_V2
    v4 = MetricCodec("golden", wire_version=4).encode(records)
    assert len(v4) < len(MetricCodec("golden", wire_version=3).encode(records))
