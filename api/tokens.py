"""API tokens kept in the data directory (``secrets/api-read-token``, ``secrets/api-sql-token``,
mode 0600), generated on first use, or taken from ``TALLY_API_TOKEN`` / ``TALLY_API_SQL_TOKEN``."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

READ_FILE = "api-read-token"
SQL_FILE = "api-sql-token"


def load_or_create(path: Path) -> str:
    """The token stored at ``path``; a new random one (written 0600) if there is none."""
    if path.exists():
        token = path.read_text().strip()
        if token:
            return token
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def tokens(data_dir: Path, env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """``(read_token, sql_token)``: from the environment if set, else from the data dir."""
    env = os.environ if env is None else env
    secrets_dir = data_dir / "secrets"
    read = env.get("TALLY_API_TOKEN") or load_or_create(secrets_dir / READ_FILE)
    sql = env.get("TALLY_API_SQL_TOKEN") or load_or_create(secrets_dir / SQL_FILE)
    return read, sql
