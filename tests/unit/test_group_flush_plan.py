from aiokafka import TopicPartition

from tally.engine.group_flush import GroupFlush
from tally.engine.intent import Intent
from tally.engine.metrics import EngineMetrics
from tally.engine.partitions import PartitionState


class Rows(list):
    pass


class TinyFold:
    """Just enough of a Fold for planning: a length."""

    def __init__(self, n: int) -> None:
        self.n, self.events, self.nbytes = n, n, n

    def __len__(self) -> int:
        return self.n

    def rows(self) -> Rows:
        return Rows(range(self.n))

    def clear(self) -> None:
        self.n = 0


def state(partition: int, start: int, last: int, rows: int, replay: Intent | None = None):
    s = PartitionState(TopicPartition("t", partition), TinyFold(rows), start, last, replay)
    return s, replay or Intent(start, last)


def groups_of(max_metadata: int = 3_000) -> GroupFlush:
    return GroupFlush(object(), EngineMetrics(), None, list, max_metadata)  # type: ignore[arg-type]


def test_fresh_ranges_with_rows_form_one_group_the_rest_stays_per_partition():
    work = [
        state(4, 10, 19, 3),
        state(1, 0, 9, 2),
        state(2, 5, 5, 0),  # nothing folded (all dead-lettered): no insert
        state(3, 7, 8, 1, replay=Intent(7, 8)),  # a tally1 replay keeps its own token
        state(0, 100, 150, 5),
    ]
    groups, rest = groups_of().plan(work)
    assert len(groups) == 1
    (group,) = groups
    assert [m.partition for m in group.intent.members] == [0, 1, 4]
    assert [s.tp.partition for s in group.states] == [0, 1, 4]
    assert sorted(s.tp.partition for s, _ in rest) == [2, 3]
    intents = group.intents()
    assert intents[TopicPartition("t", 4)].offset == 10
    assert intents[TopicPartition("t", 4)].metadata == group.intent.encode(4)


def test_a_lone_range_or_a_tiny_metadata_limit_means_no_group():
    lone = [state(1, 0, 9, 2)]
    assert groups_of().plan(lone) == ([], lone)
    work = [state(p, 0, 9, 1) for p in range(4)]
    groups, rest = groups_of(max_metadata=10).plan(work)
    assert groups == [] and len(rest) == 4
