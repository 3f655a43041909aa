from tally.engine.group_intent import MAX_METADATA, PREFIX, GroupIntent, Member, chunk
from tally.engine.intent import Intent


def test_group_metadata_round_trips_for_every_member_and_names_the_whole_group():
    group = GroupIntent.of([Member(5, 100, 180), Member(1, 7, 9), Member(3, 0, 0)])
    assert [m.partition for m in group.members] == [1, 3, 5]
    for m in group.members:
        text = group.encode(m.partition)
        assert text.startswith(f"{PREFIX}:{m.start}:{m.end}:")
        assert GroupIntent.decode(text, m.start, m.partition) == group
    # Not at the committed offset, not a member, or an old tally1 intent: no group.
    assert GroupIntent.decode(group.encode(5), 99, 5) is None
    assert GroupIntent.decode(group.encode(5), 100, 2) is None
    assert GroupIntent.decode(Intent(3, 9).encode(), 3, 1) is None
    assert GroupIntent.decode("tally2:1:2:garbage", 1, 0) is None
    # ... and a tally2 text is no tally1 intent (upgrade: each decoder takes its own).
    assert Intent.decode(group.encode(1), 7) is None


def test_token_depends_on_the_whole_group_not_on_member_order():
    a = GroupIntent.of([Member(1, 0, 9), Member(2, 0, 4)])
    b = GroupIntent.of([Member(2, 0, 4), Member(1, 0, 9)])
    c = GroupIntent.of([Member(1, 0, 9), Member(2, 0, 5)])
    assert a.token("t") == b.token("t") != c.token("t")
    assert a.token("t") != a.token("u")


def test_a_partition_twice_is_refused():
    try:
        GroupIntent.of([Member(1, 0, 9), Member(1, 10, 19)])
    except ValueError:
        return
    raise AssertionError("duplicate partition accepted")


def test_chunks_keep_every_members_metadata_under_the_limit():
    big = 10**12
    members = [Member(p, big + p, big + p + 50_000) for p in range(256)]
    groups = chunk(members, MAX_METADATA)
    assert sorted(m for g in groups for m in g) == members
    assert len(groups) > 1
    for g in groups:
        intent = GroupIntent.of(g)
        assert all(len(intent.encode(m.partition)) <= MAX_METADATA for m in g)
    assert chunk(members[:8]) == [members[:8]]
