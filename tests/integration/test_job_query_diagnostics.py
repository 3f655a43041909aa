"""A job query that finds none of the paths it reads says which paths it expected."""

from __future__ import annotations

from datetime import UTC, datetime

import clickhouse_connect
import pytest

from tally.aggregator.fold import FoldRows
from tally.aggregator.sink import RollupSink
from tally.clickhouse.settings import ClickHouseSettings
from tally.embedded.clickhouse.process import start_clickhouse
from tally.read.job_queries import DURATION_BY_BUCKET, MissingPathsError, run_job_query
from tally.schemas.ddl import RollupSchema

pytestmark = pytest.mark.integration

USER, PASSWORD = "tally", "diag-test-secret"
T0 = 1_763_596_800  # 2025-11-20 00:00:00 UTC


async def test_duration_by_bucket_names_the_paths_it_expected(tmp_path):
    with start_clickhouse(tmp_path, user=USER, password=PASSWORD) as server:
        sink = RollupSink(
            ClickHouseSettings(url=server.url, user=USER, password=PASSWORD),
            RollupSchema(database="diag"),
        )
        await sink.start()
        await sink.apply_ddl()
        rows = FoldRows(
            [("event::schedule",), ("event::other",)],
            [T0 + 60, T0 + 60],
            [
                ("jobs.sync.count", "jobs.sync.duration"),  # duration as a plain number
                ("jobs.sync.count", "jobs.sync.duration.count", "jobs.sync.duration.sum"),
            ],
            [[2.0, 300.0], [2.0, 2.0, 300.0]],
        )
        await sink.insert(rows, "diag:0:0-1")
        await sink.close()
        client = clickhouse_connect.get_client(
            host=server.host, port=server.port, username=USER, password=PASSWORD
        )
        try:
            params = {
                "group": "jobs",
                "start": datetime.fromtimestamp(T0, UTC),
                "end": datetime.fromtimestamp(T0 + 86400, UTC),
            }
            with pytest.raises(MissingPathsError) as caught:
                run_job_query(
                    client, DURATION_BY_BUCKET, {**params, "key": "event::schedule"}, "diag"
                )
            message = str(caught.value)
            assert "jobs.<item>.duration.count" in message
            assert "jobs.<item>.duration.sum" in message
            assert "measures found there: count, duration" in message
            good = run_job_query(
                client, DURATION_BY_BUCKET, {**params, "key": "event::other"}, "diag"
            )
            assert [(r[0], r[2], r[3]) for r in good] == [("sync", 2.0, 150.0)]
        finally:
            client.close()
