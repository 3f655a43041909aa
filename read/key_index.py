"""The key index of the dashboards: search by prefix or pattern, job keys first, keyset pages.

Order: the job trackers' keys (``event::<name>``), then their tenant keys
(``event::<name>::<tenant>``), then every other key; by key within each. A page continues
strictly after the ``(rank, key)`` of the previous page's last key. Every value is a bound
parameter; ``total`` comes from a count over the same filter.
"""

from __future__ import annotations

import msgspec

from tally.ingest.jobs.names import JOB_KEY_PREFIX
from tally.read import cursor
from tally.read.patterns import KeyPattern
from tally.read.queries import Sql
from tally.read.results import KeyInfo
from tally.schemas.ddl import identifier
from tally.schemas.ddl_keys import KEYS_TABLE

RANK = "if(startsWith(key, {job:String}), if(countSubstrings(key, '::') = 1, 0, 1), 2)"


class KeyPage(msgspec.Struct, frozen=True):
    """One page of keys, how many match in all, and the cursor of the next page (or None)."""

    keys: list[KeyInfo]
    total: int
    next: str | None


def rank(key: str) -> int:
    """0 for a job tracker's key, 1 for its tenant keys, 2 for any other (as ``RANK``)."""
    if not key.startswith(JOB_KEY_PREFIX):
        return 2
    return 0 if key.count("::") == 1 else 1


def pattern(search: str | None) -> KeyPattern:
    """A search as a key pattern: text without ``*`` is a prefix (``event::`` = ``event::*``)."""
    text = (search or "").strip()
    return KeyPattern.parse(text if "*" in text else f"{text}*")


def _filtered(database: str, where: str) -> str:
    return f"""SELECT key, toUInt32(max(last_seen)) AS last
FROM {identifier(database)}.{KEYS_TABLE}
WHERE startsWith(key, {{prefix:String}}) AND key LIKE {{like:String}}
  AND day >= toDate(toDateTime({{start:UInt32}}, 'UTC'))
  AND day <= toDate(toDateTime({{end:UInt32}}, 'UTC')){where}
GROUP BY key
HAVING max(last_seen) >= toDateTime({{start:UInt32}}, 'UTC')
   AND min(first_seen) < toDateTime({{end:UInt32}}, 'UTC')"""


def page_sql(
    database: str, kp: KeyPattern, start: int, end: int, after: str | None, limit: int
) -> Sql:
    """``limit + 1`` keys after the cursor ``after`` (one more tells whether a next page is)."""
    params: dict[str, object] = {"prefix": kp.prefix, "like": kp.like, "start": start,
                                 "end": end, "job": JOB_KEY_PREFIX, "limit": limit + 1}  # fmt: skip
    where = ""
    if after is not None:
        after_rank, after_key = cursor.decode(after, (int, str))
        where = f"\n  AND ({RANK}, key) > ({{c_rank:UInt8}}, {{c_key:String}})"
        params["c_rank"], params["c_key"] = after_rank, after_key
    text = f"{_filtered(database, where)}\nORDER BY {RANK}, key\nLIMIT {{limit:UInt32}}"
    return Sql(text, params)


def count_sql(database: str, kp: KeyPattern, start: int, end: int) -> Sql:
    """How many keys match (the M of "N of M")."""
    params: dict[str, object] = {"prefix": kp.prefix, "like": kp.like, "start": start, "end": end}
    return Sql(f"SELECT count() FROM ({_filtered(database, '')})", params)


def next_cursor(keys: list[str], limit: int) -> str | None:
    """The cursor after the page's last key when more than ``limit`` keys came back."""
    if len(keys) <= limit:
        return None
    last = keys[limit - 1]
    return cursor.encode([rank(last), last])
