"""Where a read-side command or service finds ClickHouse: the rows ``tally monitors``,
``tally api`` and ``tally ui`` share, and the read settings they make.

Unlike a write service's, the URL defaults to the one the data directory's ``stack.json``
records (``tally up`` writes it), and the password, when ``TALLY_CLICKHOUSE_PASSWORD`` is not
set, to the one ``tally up`` generated into the data directory.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tally.clickhouse.settings import CONNECTION, DATABASE, ClickHouseSettings
from tally.read.settings import ReadSettings
from tally.schemas.settings_table import BadSetting, Setting, SettingsTable
from tally.up.paths import default_data_dir, stored_clickhouse_password
from tally.up.stack_file import clickhouse_url

DATA_DIR = Setting(
    "data_dir", Path, default_data_dir(), "--data-dir", "TALLY_DATA_DIR",
    "tally up's data directory: its stack.json gives the ClickHouse URL and its secret the"
    " password when neither is set",
)  # fmt: skip
READ_TARGET = (
    CONNECTION.without("clickhouse_ca_cert", "clickhouse_cluster")
    .with_changes("clickhouse_url", default=None,
                  help="ClickHouse HTTP(S) URL [default: the data dir's stack.json, else"
                  " http://127.0.0.1:8123]")
    .with_changes("clickhouse_password", default=None)
    + SettingsTable((DATABASE, DATA_DIR))
)  # fmt: skip


def read_settings_from(values: Mapping[str, Any]) -> ReadSettings:
    """The read settings of resolved ``READ_TARGET`` values; :class:`BadSetting` names the
    flag of a URL without scheme or host, or of a database that is no identifier."""
    data_dir = Path(values["data_dir"])
    url = clickhouse_url(values["clickhouse_url"], data_dir)
    password = values["clickhouse_password"]
    if password is None:
        password = stored_clickhouse_password(data_dir.expanduser()) or ""
    try:
        clickhouse = ClickHouseSettings(url=url, user=values["clickhouse_user"], password=password)
    except ValueError as exc:
        raise BadSetting(READ_TARGET["clickhouse_url"], str(exc)) from None
    try:
        return ReadSettings(clickhouse=clickhouse, database=values["database"])
    except ValueError as exc:
        raise BadSetting(DATABASE, str(exc)) from None
