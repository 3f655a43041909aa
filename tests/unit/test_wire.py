import msgspec
import pytest

from tally.schemas.wire import BatchDecoder, BatchEncoder, WireError


def test_round_trip_interns_strings_keysets_and_shapes():
    enc = BatchEncoder("host:1")
    events = [
        (1_700_000_000, ("calc", "calc::t1"), ("count", "duration.sum"), [1, 2.5]),
        (1_700_000_001, ("calc", "calc::t2"), ("count", "duration.sum"), [1, 3.0]),
        (1_700_000_002, ("calc", "calc::t1"), ("count",), [1]),
    ]
    payload = enc.encode(events)
    batch = BatchDecoder().decode(payload)
    assert batch.source == "host:1"
    assert sorted(batch.strings) == sorted(
        {"calc", "calc::t1", "calc::t2", "count", "duration.sum"}
    )
    assert len(batch.keysets) == 2 and len(batch.shapes) == 2
    decoded = [
        (
            e.at,
            tuple(batch.strings[i] for i in batch.keysets[e.keyset]),
            tuple(batch.strings[i] for i in batch.shapes[e.shape]),
            e.values,
        )
        for e in batch.events
    ]
    assert decoded == events


def test_wire_is_compact():
    enc = BatchEncoder("s")
    one = (1_700_000_000, ("calc",), ("count", "success", "duration.sum"), [1, 1, 0.25])
    size_1 = len(enc.encode([one]))
    size_1000 = len(enc.encode([one] * 1000))
    per_event = (size_1000 - size_1) / 999
    assert per_event < 25, per_event  # no field names, no repeated strings


def test_first_element_is_the_schema_version():
    payload = BatchEncoder("s").encode([(1, ("k",), ("p",), [1])])
    assert msgspec.msgpack.decode(payload)[0] == 1


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xc1\xc1", "undecodable"),
        (msgspec.msgpack.encode([5, "s", [], [], [], []]), "unknown_version"),
        (msgspec.msgpack.encode([3, "s", [], [], [], []]), "malformed_columns"),
        (msgspec.msgpack.encode([4, "s", [], [], [], []]), "malformed_columns"),
        (msgspec.msgpack.encode({"a": 1}), "malformed_batch"),
        (
            msgspec.msgpack.encode([1, "s", ["k"], [[0]], [[0]], [[1, 0, 0, ["x"]]]]),
            "malformed_fields",
        ),
    ],
)
def test_decode_errors_have_stable_reasons(payload, reason):
    with pytest.raises(WireError) as info:
        BatchDecoder().decode(payload)
    assert info.value.reason == reason
