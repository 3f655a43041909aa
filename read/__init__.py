"""Read the rollups: ``values``/``series``, key discovery, read-only SQL, and the query catalogue
(``rollup_queries``, ``job_queries``: documented SQL to run with any client)."""

from tally.read.distributions import Distribution, GaugeSeries
from tally.read.errors import (
    BadExpression,
    BadGranularity,
    BadPattern,
    BadRange,
    BadSql,
    ReadError,
    TooLarge,
)
from tally.read.reader import AsyncReader, Reader
from tally.read.results import (
    CategoryItem,
    KeyInfo,
    PathInfo,
    Row,
    Series,
    Slice,
    SqlResult,
    Values,
)
from tally.read.settings import ReadSettings

__all__ = [
    "AsyncReader",
    "BadExpression",
    "BadGranularity",
    "BadPattern",
    "BadRange",
    "BadSql",
    "CategoryItem",
    "Distribution",
    "GaugeSeries",
    "KeyInfo",
    "PathInfo",
    "ReadError",
    "ReadSettings",
    "Reader",
    "Row",
    "Series",
    "Slice",
    "SqlResult",
    "TooLarge",
    "Values",
]
