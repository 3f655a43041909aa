"""tally: business metrics from background jobs.

Folders in flow order, and what flows through each:

- ``ingest``: ``track(keys, values)`` calls (and ``jobs/`` runs) -> batched records -> Kafka.
- ``sampler``: queue depth, oldest job age and worker counts -> gauges through ``ingest``.
- ``kafka``, ``clickhouse``: the plumbing every service shares: connection settings and
  security, clients, admin helpers, insert settings, error classes, the DDL runner.
- ``schemas``: the contract every stage shares: wire format, limits, time buckets, DDL.
- ``engine``: the exactly-once consumer loop: Kafka records -> a fold -> flush intent ->
  insert with a deterministic token -> commit; dead letters, isolation of rejected ranges.
- ``aggregator``: the engine configured with the rollup fold and sink -> ClickHouse rollups.
- ``read``: rollups -> ``values``/``series``, keys and paths, read-only SQL, the query catalogue.
- ``traces``: one job execution -> blocks, notes, artifacts -> its own Kafka topic, and the
  engine configured with the trace fold and sink -> its tables.
- ``monitors``: durable rollup buckets -> rule conditions -> notifications sent once.
- ``api``: HTTP requests -> read, monitors and traces -> ``/api/v1`` JSON.
- ``web``: dashboard YAML and the API -> the pages at ``/ui/`` (and Grafana JSON).
- ``embedded``: Kafka, ClickHouse (chDB) and Redis run on this machine, for tests and ``up``.
- ``up``: the local service: embedded Kafka and ClickHouse, aggregators, API and dashboard.
- ``loadtest``: workloads -> the whole pipeline -> exactness, throughput, latency, the demo,
  the benchmarks and the import-graph check (``loadtest/imports.py``).
- ``cli``: the ``tally`` command -> each of the above.
"""
