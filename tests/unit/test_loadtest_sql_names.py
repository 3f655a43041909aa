"""Load-test helpers format the database name into SQL: only plain identifiers get there."""

import pytest

from tally.loadtest.config import RunConfig
from tally.loadtest.exactness import fetch_totals
from tally.loadtest.freshness import FreshnessProbe
from tally.loadtest.monitor import aggregated_events

BAD = ["tally; DROP DATABASE x", "tally\n", "a.b", "t`x", ""]


class NoClient:
    def query(self, *args, **kwargs):
        raise AssertionError("SQL was sent with an unvalidated database name")


@pytest.mark.parametrize("name", BAD)
def test_database_names_are_validated_before_any_sql(name):
    with pytest.raises(ValueError):
        fetch_totals(NoClient(), name)
    with pytest.raises(ValueError):
        aggregated_events(NoClient(), name)
    with pytest.raises(ValueError):
        FreshnessProbe("127.0.0.1:9092", "t", NoClient, database=name)
    with pytest.raises(ValueError):
        RunConfig(database=name)
    with pytest.raises(ValueError):
        RunConfig(naive_database=name)
