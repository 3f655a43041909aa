"""The embedded ClickHouse password: generated at first start, kept in the data dir.

The file is ``<data_dir>/secrets/clickhouse-password`` (directory mode 0700, file mode 0600).
The server reads it; the launcher reads it to hand it to the components it starts (aggregators
get ``TALLY_CLICKHOUSE_PASSWORD``); it never travels on a command line or in the server's
environment.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

SECRETS_DIR = "secrets"
PASSWORD_FILE = "clickhouse-password"


def password_path(data_dir: Path, name: str = PASSWORD_FILE) -> Path:
    """``<data_dir>/secrets/<name>`` (``clickhouse-password``: the administrator's)."""
    return Path(data_dir) / SECRETS_DIR / name


def ensure_password(data_dir: Path, password: str | None = None, name: str = PASSWORD_FILE) -> str:
    """The data dir's password ``name``: ``password`` if given (stored), else the stored one,
    else a new random one (stored). Tightens the modes of an existing directory and file."""
    path = password_path(data_dir, name)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    if password is not None:
        if not password or "\n" in password:
            raise ValueError("the ClickHouse password must be one non-empty line")
        _write_private(path, password)
        return password
    try:
        os.chmod(path, 0o600)
        return read_password(data_dir, name)
    except FileNotFoundError:
        pass
    generated = secrets.token_urlsafe(32)
    try:
        _write_private(path, generated, exclusive=True)
    except FileExistsError:  # another starter won the race: use theirs
        return read_password(data_dir, name)
    return generated


def read_password(data_dir: Path, name: str = PASSWORD_FILE) -> str:
    """The stored password; ``FileNotFoundError`` before the first start."""
    password = password_path(data_dir, name).read_text().strip("\n")
    if not password:
        raise ValueError(f"{password_path(data_dir, name)} is empty")
    return password


def _write_private(path: Path, text: str, exclusive: bool = False) -> None:
    """Write ``text`` to a file created with mode 0600 (atomically unless ``exclusive``)."""
    target = path if exclusive else path.with_name(f".{path.name}.{os.getpid()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(target, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, f"{text}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    if not exclusive:
        os.replace(target, path)
