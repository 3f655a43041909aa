"""Wire bytes of the outbox's codecs, against records captured from the client before the
typed-record outbox (tuple buffer, ``BatchEncoder`` picking V1/V2 by tuple length)."""

from __future__ import annotations

from tally.ingest import ClientSettings, Dist, Tracker, dist, gauge
from tally.ingest.codec import MetricCodec
from tally.ingest.records import KindsRecord, MetricRecord
from tally.traces.codec import TraceCodec, TraceRecord
from tally.traces.model import Execution, Line, LogEvent

AT = 1_790_000_000
# Captured at b93ba97: ``MetricCodec("golden").encode`` of the first 3 / all 5 buffered events.
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
GOLDEN_TRACES = bytes.fromhex(
    "9301ad676f6c64656e2f74726163657392dc0013d92030303030303030303030303030303030303030303030"
    "30303030303030303031a0a67461736b2d31a463616c63a461636d65ab6576656e743a3a63616c63a7737563"
    "63657373a24f4ba001cf00065bfeda25e001cd05dc81a8637573746f6d6572a23432a673616d706c65929b01"
    "0000a5626c6f636ba67374657020300005a26f6ba0c2009b020000a5626c6f636ba67374657020310a05a26f"
    "6ba0c200929701a773746172746564a463616c6301a35b315da0a09702a866696e6973686564a463616c6301"
    "a0a0a000a0a0dc0013d9203030303030303030303030303030303030303030303030303030303030303032a0"
    "a67461736b2d31a463616c63a461636d65ab6576656e743a3a63616c63a773756363657373a24f4ba001cf00"
    "065bfeda25e002cd05dc81a8637573746f6d6572a23432a673616d706c6590929701a773746172746564a463"
    "616c6301a35b315da0a09702a866696e6973686564a463616c6301a0a0a000a0a0"
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


def execution(i: int, lines: int = 2) -> Execution:
    return Execution(
        id=f"{i:032x}", parent_id="", ref="task-1", job="calc", tenant="acme", key="event::calc",
        state="success", code="OK", error="", attempt=1, started_us=1_790_000_000_000_000 + i,
        duration_us=1500, tags={"customer": "42"}, sampled="sample",
        lines=[Line(s + 1, 0, 0, "block", f"step {s}", s * 10, 5, "ok") for s in range(lines)],
        events=[LogEvent(1, "started", "calc", 1, "[1]"), LogEvent(2, "finished", "calc", 1)],
    )  # fmt: skip


def test_metric_records_encode_to_the_same_bytes_as_before():
    records = tracked()
    assert [type(r) for r in records] == [MetricRecord] * 3 + [KindsRecord] * 2
    assert [r.route for r in records] == ["calc::acme", "r", "calc::acme", "q::x", "q::\u00fc"]
    codec = MetricCodec("golden")
    assert codec.encode(records[:3]) == GOLDEN_V1  # only MetricRecords: BatchV1
    assert codec.encode(records) == GOLDEN_V2  # any KindsRecord: BatchV2


def test_decoded_metric_records_encode_back_to_the_same_bytes():
    codec = MetricCodec("golden")
    for golden in (GOLDEN_V1, GOLDEN_V2):
        assert codec.encode(codec.decode(golden)) == golden
    assert [r.route for r in codec.decode(GOLDEN_V2)] == [
        "calc::acme",
        "refresh",
        "calc::acme",
        "q::x",
        "q::\u00fc",
    ]


def test_trace_records_encode_to_the_same_bytes_as_before():
    records = [TraceRecord.of(execution(1)), TraceRecord.of(execution(2, 0))]
    codec = TraceCodec("golden/traces")
    assert codec.encode(records) == GOLDEN_TRACES
    assert codec.decode(GOLDEN_TRACES) == records
