"""Where ``tally up`` keeps its data and secrets."""

from __future__ import annotations

import os
from pathlib import Path

CLICKHOUSE_PASSWORD_FILE = "clickhouse-password"


def default_data_dir() -> Path:
    """``$TALLY_DATA_DIR`` or ``~/.local/share/tally``."""
    env = os.environ.get("TALLY_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".local" / "share" / "tally"


def secret_path(data_dir: Path, name: str) -> Path:
    """``<data_dir>/secrets/<name>`` (files there are mode 0600)."""
    return data_dir / "secrets" / name


def stored_clickhouse_password(data_dir: Path) -> str | None:
    """The password ``tally up`` generated for its ClickHouse, if there is one."""
    path = secret_path(data_dir, CLICKHOUSE_PASSWORD_FILE)
    try:
        return path.read_text().strip() or None
    except OSError:
        return None
