"""The server's command line: arguments to a :class:`ServerConfig`, logging, then serve."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tally.embedded.clickhouse import access
from tally.embedded.clickhouse.access import Login
from tally.embedded.clickhouse.auth import Credentials
from tally.embedded.clickhouse.limits import Limits
from tally.embedded.clickhouse.process import is_loopback
from tally.embedded.clickhouse.secret import ensure_password
from tally.embedded.clickhouse.server import ServerConfig, serve
from tally.schemas.access import AccessModel


def parse_args(argv: list[str] | None = None) -> tuple[ServerConfig, str]:
    parser = argparse.ArgumentParser(
        prog="python -m tally.embedded.clickhouse",
        description="Serve a chDB data path over ClickHouse's HTTP interface. Every query needs "
        "the user and password; the password is generated at first start into "
        "<path>/secrets/clickhouse-password (mode 0600).",
    )
    parser.add_argument("--path", type=Path, required=True, help="chDB data directory")
    parser.add_argument("--host", default="127.0.0.1", help="loopback unless --allow-remote")
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --host (plain HTTP: put TLS in front of it)",
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--ready-file", type=Path, help="written with the port once listening")
    parser.add_argument("--user", default="default", help="the one user (default: default)")
    parser.add_argument(
        "--password-file", type=Path, help="default: <path>/secrets/clickhouse-password"
    )
    parser.add_argument(
        "--access-file",
        type=Path,
        help="the component users (tally.schemas.access, JSON); their passwords are generated"
        " into <path>/secrets/clickhouse-<component>-password",
    )
    parser.add_argument("--parent-pid", type=int, help="stop when this process is gone")
    parser.add_argument("--max-sessions", type=int, default=Limits.max_sessions)
    parser.add_argument("--max-session-timeout", type=float, default=Limits.max_session_timeout)
    parser.add_argument("--max-query-bytes", type=int, default=Limits.max_query_bytes)
    parser.add_argument("--max-insert-bytes", type=int, default=Limits.max_insert_bytes)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if not (is_loopback(args.host) or args.allow_remote):
        parser.error(f"--host {args.host} is not a loopback address: add --allow-remote")
    path = args.path.resolve()
    if args.password_file is None:
        password = ensure_password(path)
    else:
        password = args.password_file.read_text().strip("\n")
        if not password:
            parser.error(f"{args.password_file} is empty")
    components: dict[str, Login] = {}
    if args.access_file is not None:
        model = AccessModel.from_json(args.access_file.read_text())
        passwords = access.component_passwords(path, model)
        components = access.logins(Login(args.user, password), model, passwords)
    config = ServerConfig(
        path=path,
        credentials=Credentials(args.user, password, components),
        host=args.host,
        port=args.port,
        ready_file=args.ready_file,
        parent_pid=args.parent_pid,
        limits=Limits(
            max_query_bytes=args.max_query_bytes,
            max_insert_bytes=args.max_insert_bytes,
            max_sessions=args.max_sessions,
            max_session_timeout=args.max_session_timeout,
        ),
    )
    return config, args.log_level


def main(argv: list[str] | None = None) -> None:
    config, log_level = parse_args(argv)
    logging.basicConfig(
        level=log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    sys.exit(serve(config))


if __name__ == "__main__":
    main()
