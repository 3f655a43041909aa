"""What SQL sent to the embedded ClickHouse may reach on this machine.

chDB is clickhouse-local: it ignores ``user_files_path`` (``file()`` reads any path), its
``default`` database also serves files as tables, and its user holds every grant. The server
therefore opens chDB with its own configuration, written into the data dir at each start:

- ``default`` is a plain Atomic database (not clickhouse-local's overlay of the filesystem);
- ``user_files_path``, ``user_scripts_path`` and ``format_schema_path`` are one empty directory,
  ``<data_dir>/user_files``, and no remote URL is allowed (``remote_url_allow_hosts``);
- the only user holds grants on tables and views but none on sources (the ``file``, ``url``,
  ``s3``, ``hdfs``, ``remote``, ``mysql``, ... table functions and engines), ``SYSTEM``,
  ``BACKUP``, dictionaries, introspection or access management; its profile pins settings that
  would evaluate SQL hidden in strings or read files (constraints: clients cannot change them);
- :class:`QueryPolicy` checks each statement, as ClickHouse's own parser reads it
  (``formatQuery``), for what no grant covers in clickhouse-local: the ``file()`` function,
  ``INTO OUTFILE``, ``FROM INFILE``, chDB's ``python()``, ad-hoc ``disk()``\\ s, and table
  engines that take a path or run a program (only :data:`ALLOWED_ENGINES` may be created).

``system.part_log`` is on (clickhouse-local has it off): load tests count new parts and merges
from it, as one would on a server.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from xml.sax.saxutils import escape

__all__ = ["ALLOWED_ENGINES", "QueryPolicy", "connection_string", "prepare"]

USER_FILES_DIR = "user_files"
SANDBOX_DIR = "sandbox"
# The name chDB gives its file-serving overlay database; never the current database.
OVERLAY_DATABASE = "_local_files"

GRANTS = (
    "GRANT SHOW, SELECT, INSERT, ALTER, CREATE DATABASE, CREATE TABLE, CREATE VIEW,"
    " CREATE TEMPORARY TABLE, DROP, UNDROP TABLE, TRUNCATE, OPTIMIZE, KILL QUERY ON *.*",
)
# Settings pinned to these values (constraint: read-only for every client).
PINNED_SETTINGS = {
    # ``INSERT ... VALUES (file('/etc/passwd'))``: Values data is not part of the parsed query.
    "input_format_values_interpret_expressions": "0",
    "input_format_values_deduce_templates_of_expressions": "0",
    # SQL in string literals, evaluated per table or result.
    "additional_table_filters": "{}",
    "additional_result_filter": "",
    # File paths read by the Protobuf/CapnProto/Template formats.
    "format_schema": "",
    "format_template_row": "",
    "format_template_resultset": "",
    "allow_introspection_functions": "0",
}
ALLOWED_ENGINES = frozenset(
    {
        "ATOMIC", "MEMORY", "NULL", "LOG", "TINYLOG", "STRIPELOG", "SET", "JOIN", "BUFFER",
        "MERGE", "GENERATERANDOM", "VIEW", "MATERIALIZEDVIEW",
    }
)  # fmt: skip  # and every *MergeTree
DENIED_FUNCTIONS = frozenset({"FILE", "PYTHON", "DISK", "EXECUTABLE", "EXECUTABLEPOOL"})


def prepare(data_dir: Path) -> str:
    """Write the engine's configuration into ``data_dir``; returns chDB's connection string."""
    data_dir = Path(data_dir).resolve()
    if "?" in str(data_dir) or "&" in str(data_dir):
        raise ValueError(f"the data dir path must not contain '?' or '&': {data_dir}")
    user_files = data_dir / USER_FILES_DIR
    user_files.mkdir(mode=0o700, parents=True, exist_ok=True)
    sandbox = data_dir / SANDBOX_DIR
    sandbox.mkdir(mode=0o700, exist_ok=True)
    users = sandbox / "users.xml"
    _write(users, _users_xml())
    config = sandbox / "config.xml"
    _write(config, _config_xml(user_files, users))
    _plain_default_database(data_dir)
    return connection_string(data_dir)


def connection_string(data_dir: Path) -> str:
    """chDB's connection string for a prepared ``data_dir``."""
    data_dir = Path(data_dir).resolve()
    return f"{data_dir}?config-file={data_dir / SANDBOX_DIR / 'config.xml'}"


def _config_xml(user_files: Path, users: Path) -> str:
    files = escape(f"{user_files}/")
    return f"""<clickhouse>
    <default_database>{OVERLAY_DATABASE}</default_database>
    <user_files_path>{files}</user_files_path>
    <user_scripts_path>{files}</user_scripts_path>
    <format_schema_path>{files}</format_schema_path>
    <remote_url_allow_hosts><host>remote-urls-are-disabled.invalid</host></remote_url_allow_hosts>
    <user_directories><users_xml><path>{escape(str(users))}</path></users_xml></user_directories>
    <part_log>
        <database>system</database>
        <table>part_log</table>
        <flush_interval_milliseconds>2000</flush_interval_milliseconds>
        <ttl>event_date + INTERVAL 3 DAY</ttl>
    </part_log>
</clickhouse>
"""


def _users_xml() -> str:
    settings = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in PINNED_SETTINGS.items())
    constraints = "".join(f"<{k}><readonly/></{k}>" for k in PINNED_SETTINGS)
    grants = "".join(f"<query>{escape(g)}</query>" for g in GRANTS)
    return f"""<clickhouse>
    <profiles><default>{settings}<constraints>{constraints}</constraints></default></profiles>
    <quotas><default></default></quotas>
    <users>
        <default>
            <password></password>
            <networks><ip>::/0</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
            <grants>{grants}</grants>
        </default>
    </users>
</clickhouse>
"""


def _plain_default_database(data_dir: Path) -> None:
    """Declare ``default`` as an Atomic database, keeping the tables of an existing data dir.

    chDB builds ``default`` as an overlay of an Atomic database (whose UUID it finds through the
    ``metadata/default`` symlink) and the filesystem. With ``metadata/default.sql`` the Atomic
    database loads as ``default`` itself; the symlink goes, or the overlay would claim its UUID.
    """
    metadata = data_dir / "metadata"
    metadata.mkdir(parents=True, exist_ok=True)
    declaration = metadata / "default.sql"
    link = metadata / "default"
    if not declaration.exists():
        database_uuid = str(uuid.uuid4())
        if link.is_symlink():
            database_uuid = str(uuid.UUID(Path(os.readlink(link)).name))
        _write(declaration, f"ATTACH DATABASE _ UUID '{database_uuid}'\nENGINE = Atomic\n")
    if link.is_symlink():
        link.unlink()


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# Per-statement policy

_CANONICAL_TOKEN = re.compile(
    r"""(?P<quoted>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|`(?:[^`\\]|\\.)*`)
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<space>\s+)
    | (?P<other>.)""",
    re.VERBOSE | re.DOTALL,
)


class PolicyViolation(Exception):
    """A statement reaches outside the data dir."""


class QueryPolicy:
    """Refuses statements that would read or write files, run programs or open connections.

    ``canonical(sql)`` must return ClickHouse's own formatting of ``sql`` (``formatQuery``): no
    comments, heredocs or odd quoting are left to fool the check, and the check reads the same
    parse that will run.
    """

    def check(self, sql: str, canonical: Callable[[str], str]) -> None:
        """Raise :class:`PolicyViolation` if the statement is not allowed."""
        tokens = list(_significant(canonical(sql)))
        for i, (kind, text) in enumerate(tokens):
            if kind != "word":
                continue
            upper = text.upper()
            after = tokens[i + 1] if i + 1 < len(tokens) else ("", "")
            if upper in DENIED_FUNCTIONS and after == ("other", "("):
                raise PolicyViolation(f"function {text}() is not available on this server")
            if upper == "INTO" and after[0] == "word" and after[1].upper() == "OUTFILE":
                raise PolicyViolation("INTO OUTFILE is not allowed")
            if upper == "FROM" and after[0] == "word" and after[1].upper() == "INFILE":
                raise PolicyViolation("FROM INFILE is not allowed")
            if upper == "ENGINE" and after == ("other", "="):
                _check_engine(tokens[i + 2 : i + 3])


def _check_engine(name: Iterable[tuple[str, str]]) -> None:
    for kind, text in name:
        if kind == "quoted" and text.startswith("`") and "\\" not in text:
            kind, text = "word", text[1:-1]  # `Null`
        upper = text.upper()
        if kind != "word" or not (upper in ALLOWED_ENGINES or upper.endswith("MERGETREE")):
            raise PolicyViolation(f"table engine {text} is not available on this server")


def _significant(sql: str) -> Iterable[tuple[str, str]]:
    for match in _CANONICAL_TOKEN.finditer(sql):
        kind = match.lastgroup or "other"
        if kind != "space":
            yield kind, match.group()
