"""The HTTP side: ``/ping``, ``GET /`` and queries on ``/`` answered as clickhouse-server
answers them, one thread per connection, with requests in flight counted for shutdown."""

from __future__ import annotations

import logging
import re
import select
import socket
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tally.embedded.clickhouse.access import Login
from tally.embedded.clickhouse.auth import Credentials, cross_site
from tally.embedded.clickhouse.body import RequestBody
from tally.embedded.clickhouse.compression import encode_response
from tally.embedded.clickhouse.engine import ChdbEngine, Outcome
from tally.embedded.clickhouse.errors import ClickHouseError, ErrorCode
from tally.embedded.clickhouse.request import QueryStatement, Statement, parse_request

log = logging.getLogger(__name__)


class Inflight:
    """Counts requests in progress; once closed it admits none and waits for the rest."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._count = 0
        self._closed = False

    def enter(self) -> bool:
        with self._changed:
            if self._closed:
                return False
            self._count += 1
            return True

    def exit(self) -> None:
        with self._changed:
            self._count -= 1
            self._changed.notify_all()

    def close_and_wait(self, timeout: float) -> bool:
        with self._changed:
            self._closed = True
            return self._changed.wait_for(lambda: self._count == 0, timeout)


@dataclass
class ServerState:
    """Everything a request handler needs, shared by all of them."""

    engine: ChdbEngine
    credentials: Credentials
    inflight: Inflight = field(default_factory=Inflight)


_BINARY_FORMATS = ("native", "rowbinary", "parquet", "arrow", "orc", "avro", "msgpack", "protobuf")
_PASSWORD_IN_URL = re.compile(r"(password=)[^&\s]*", re.IGNORECASE)


def content_type(fmt: str) -> str:
    name = fmt.lower()
    if name.startswith(("tabseparated", "tsv")):
        return "text/tab-separated-values; charset=UTF-8"
    if name.startswith("csv"):
        return "text/csv; charset=UTF-8"
    if name.startswith("jsoneachrow"):
        return "application/x-ndjson; charset=UTF-8"
    if name.startswith("json"):
        return "application/json; charset=UTF-8"
    if name.startswith(_BINARY_FORMATS):
        return "application/octet-stream"
    return "text/plain; charset=UTF-8"


def cancels_on_close(login: Login, statement: Statement) -> bool:
    """clickhouse-server's ``cancel_http_readonly_queries_on_client_close``, per user profile."""
    policy = login.policy
    return (
        isinstance(statement, QueryStatement)
        and policy is not None
        and str(policy.settings.get("cancel_http_readonly_queries_on_client_close", 0)) == "1"
    )


class ClientWatch:
    """While a query runs, watch its client's socket; call ``on_gone`` if the client closes it.

    A client that sends more bytes before the answer (pipelining) is not watched further.
    """

    def __init__(self, sock: socket.socket, on_gone: Callable[[], None], poll: float = 0.1) -> None:
        self._sock = sock
        self._on_gone = on_gone
        self._poll = poll
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="client-watch", daemon=True)

    def __enter__(self) -> ClientWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._done.is_set():
            try:
                readable, _, _ = select.select([self._sock], [], [], self._poll)
                if not readable:
                    continue
                if self._sock.recv(1, socket.MSG_PEEK) != b"":
                    return  # data, not a close: stop watching
            except (OSError, ValueError):
                pass  # reset or closed: gone as well
            if not self._done.is_set():
                log.info("client closed the connection; cancelling its query")
                try:
                    self._on_gone()
                except Exception:
                    log.warning("could not cancel the query of a closed connection", exc_info=True)
            return


class ClickHouseHandler(BaseHTTPRequestHandler):
    """``/ping``, ``GET /`` and queries on ``/``, as clickhouse-server answers them."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, the body waits for the
    # client's delayed ACK (~40 ms per request on Linux).
    disable_nagle_algorithm = True
    server_version = "tally-embedded-clickhouse"
    sys_version = ""
    timeout = 300  # idle keep-alive connections
    server: ClickHouseHTTPServer

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def do_OPTIONS(self) -> None:
        """CORS preflight: refused, and no ``Access-Control-Allow-*`` header is ever sent."""
        self.close_connection = True
        self._reply(405, b"Method not allowed\n", {"Allow": "GET, POST", "Connection": "close"})

    def _route(self) -> None:
        refused = cross_site(self.headers)
        if refused is not None:
            error = ClickHouseError.of(ErrorCode.ACCESS_DENIED, refused)
            self.close_connection = True  # the body is never read
            headers = {"X-ClickHouse-Exception-Code": str(error.code), "Connection": "close"}
            self._reply(error.http_status(), error.body(self.server.state.engine.version), headers)
            return
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        is_query = url.path == "/" and (self.command == "POST" or "query" in params)
        if not is_query:
            RequestBody(self.rfile, self.headers).drain()
            if url.path in ("/", "/ping"):
                self._reply(200, b"Ok.\n")
            else:
                self._reply(404, f"There is no handle {url.path}\n".encode())
            return
        if not self.server.state.inflight.enter():
            self.close_connection = True
            self._reply(503, b"Server is shutting down\n", {"Connection": "close"})
            return
        try:
            self._serve(params)
        finally:
            self.server.state.inflight.exit()

    def _serve(self, params: dict[str, str]) -> None:
        query_id = params.get("query_id") or str(uuid.uuid4())
        body = RequestBody(self.rfile, self.headers)
        try:
            result = self._execute(params, body)
            if isinstance(result, ClickHouseError):
                self._fail(result, query_id, body)
            else:
                self._succeed(result, query_id, params)
        except OSError:
            log.debug("client connection lost", exc_info=True)
            self.close_connection = True
        # A body left half-read would be parsed as the next request.
        self.close_connection = self.close_connection or not body.complete

    def _execute(self, params: dict[str, str], body: RequestBody) -> Outcome | ClickHouseError:
        state = self.server.state
        try:
            login = state.credentials.check(self.headers, params)
            options, statement = parse_request(
                self.command, params, self.headers, body, state.engine.limits
            )
            if not cancels_on_close(login, statement):
                return state.engine.run(options, statement, login)
            tag = f"tally-front:{uuid.uuid4()}"
            with ClientWatch(self.connection, lambda: state.engine.kill(tag)):
                return state.engine.run(options, statement, login, tag)
        except ClickHouseError as error:
            return error
        except OSError:
            raise
        except Exception as exc:
            log.exception("unexpected failure serving a query")
            return ClickHouseError.of(ErrorCode.STD_EXCEPTION, repr(exc))

    def _succeed(self, outcome: Outcome, query_id: str, params: Mapping[str, str]) -> None:
        headers = {
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Summary": outcome.summary.header(),
        }
        if outcome.result_format is not None:
            headers["X-ClickHouse-Format"] = outcome.result_format
            headers["X-ClickHouse-Timezone"] = outcome.timezone
            headers["Content-Type"] = content_type(outcome.result_format)
        body, encoding = encode_response(
            outcome.body,
            params.get("enable_http_compression"),
            self.headers.get("Accept-Encoding", ""),
        )
        if encoding:
            headers["Content-Encoding"] = encoding
        self._reply(200, body, headers)

    def _fail(self, error: ClickHouseError, query_id: str, body: RequestBody) -> None:
        """Answer with the error after draining the body (the client sends it all first)."""
        try:
            body.drain()
        except (OSError, ClickHouseError):
            self.close_connection = True
        headers = {
            "X-ClickHouse-Exception-Code": str(error.code),
            "X-ClickHouse-Query-Id": query_id,
        }
        if error.code == ErrorCode.REQUIRED_PASSWORD:
            headers["WWW-Authenticate"] = 'Basic realm="ClickHouse", charset="UTF-8"'
        self._reply(error.http_status(), error.body(self.server.state.engine.version), headers)

    def _reply(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        headers = dict(headers or {})
        headers.setdefault("Content-Type", "text/plain; charset=UTF-8")
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug("%s %s -> %s", self.command, urlsplit(self.path).path, code)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: %s", _PASSWORD_IN_URL.sub(r"\1***", format % args))


class ClickHouseHTTPServer(ThreadingHTTPServer):
    """A thread per connection; the shared state hangs off the server for the handlers."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], state: ServerState) -> None:
        self.state = state
        super().__init__(address, ClickHouseHandler)
