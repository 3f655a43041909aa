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


def stored_tokens(data_dir: Path, env: Mapping[str, str]) -> tuple[str | None, str | None]:
    """``(read_token, sql_token)`` from the environment, else the data dir; None where neither
    holds one (nothing is created)."""
    secrets_dir = data_dir / "secrets"
    found = []
    for name, file in (("TALLY_API_TOKEN", READ_FILE), ("TALLY_API_SQL_TOKEN", SQL_FILE)):
        token = env.get(name)
        if not token:
            try:
                token = (secrets_dir / file).read_text().strip()
            except OSError:
                token = None
        found.append(token or None)
    return found[0], found[1]


def tokens(data_dir: Path, env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """``(read_token, sql_token)``: from the environment if set, else from the data dir."""
    read, sql = stored_tokens(data_dir, os.environ if env is None else env)
    secrets_dir = data_dir / "secrets"
    return (
        read or load_or_create(secrets_dir / READ_FILE),
        sql or load_or_create(secrets_dir / SQL_FILE),
    )
