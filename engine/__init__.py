"""The exactly-once engine: Kafka partitions folded into rows, inserted into ClickHouse once.

consume → fold per partition → commit the flush intent → insert under the range's token →
commit the end, with dead letters, isolation of ranges ClickHouse rejects, and the refusal
to guess where a new group starts. Two services are configurations of it (a fold factory, a
sink and settings; see ``protocols``): the rollup aggregator (``aggregator.worker``) and the
trace writer (``traces.writer``).

Why a top-level folder: it is the consume stage of the data flow that both the ``aggregator``
and the ``traces`` stages build on, so it sits beside them rather than inside one of them; it
imports neither (only ``tally.kafka`` and ``tally.clickhouse``), so the two import it and never
each other's loop. The parts follow aiokafka's consumer: ``loop`` (the shell: start, consume,
one stop path), ``clients`` (the Kafka clients), ``partitions`` (assignment, per-partition
state, rebalance listener), ``flusher`` (intent → insert with token → commit), ``budget`` (when
to flush), ``isolator`` (halving rejected ranges, re-read outside the group), ``deadletter``,
``intent``, ``offsets`` (where a group starts), ``stopping`` (the stop-aware backoff),
``metrics``, ``settings`` (``ConsumerSettings``: what both services are built with) and
``logs`` (JSON lines); combined flushes (one insert for all owned partitions, opt-in) are
``group_intent``, ``group_flush`` and ``replay``.
"""
