"""Embedded ClickHouse: one process owns a chDB data path and speaks ClickHouse's HTTP interface.

chDB (the real ClickHouse engine, in-process) lets only one process open a data path. This server
is that process; aggregators, CLIs and people reach it with unmodified clickhouse-connect clients
(sync and async) or curl, exactly as they would reach clickhouse-server.

    python -m tally.embedded.clickhouse --path DIR [--host 127.0.0.1 [--allow-remote]]
        [--port 0] [--ready-file FILE] [--user default] [--password-file FILE]

From Python, ``start_clickhouse(path)`` (``process``) runs it as a child process and returns a
handle with the ``user`` and ``password`` clients must send.

Security (closed by default):
- Loopback only, unless ``--allow-remote`` (the password is always required).
- Every query needs the user and password (``X-ClickHouse-User``/``-Key``, basic auth or
  ``user``/``password`` parameters): none is a 401, a wrong one a 403. The password is generated
  at first start into ``DIR/secrets/clickhouse-password`` (mode 0600) unless
  ``--password-file`` names another file. ``/ping`` answers without one, like clickhouse-server.
- Requests from web pages (an ``Origin`` header, ``Sec-Fetch-Site: cross-site|same-site``) are
  refused before anything is read or run; there is no CORS preflight and no CORS header.
- The engine runs sandboxed (``sandbox``): no file, URL or remote access from SQL.
- Sessions are bounded in number and lifetime, non-INSERT bodies in size (413 beyond).

How requests map onto chDB:
- Each request runs on its own chDB connection (opening one costs ~0.1 ms). Connections to one
  path share the engine, run in parallel and keep their own settings and current database, so
  the URL's settings are applied with one ``SET`` and never leak into other requests. A single
  connection would serialise its queries. An anchor connection keeps the engine up between
  requests (chDB shuts it down when its last connection closes).
- ``INSERT ... FORMAT <fmt>``: the decompressed rows are collected (up to
  ``--max-insert-bytes``) and run with chDB's ``query``, so every error of the insert (also the
  ones raised as it finishes: TOO_MANY_PARTS, a view's ``throwIf``, constraints) is an error
  status; chDB's streaming insert reports those as success. Rows containing a blank line (which
  chDB's ``query`` takes as their end) go hex-encoded through ``format(<fmt>, unhex(...))``;
  row data is never interpreted as SQL.
- ``param_<name>`` values go to chDB's native query parameters, unchanged (same text format as
  clickhouse-server's HTTP parameters).
- Results are buffered (as with ``wait_end_of_query=1``), so an error is always a proper HTTP
  status with ``X-ClickHouse-Exception-Code`` and a ``Code: N. DB::Exception: ...`` body.
- ``session_id``: ``SET`` and ``USE`` statements persist for the session (replayed on each of
  its requests until ``session_timeout``); temporary tables do not.

Not supported: ``compress=1`` responses (ClickHouse's checksummed blocks; ``decompress=1``
request bodies are read, unverified), external data, progress headers, streamed responses,
TLS, and HTTP handlers other than ``/``, ``/ping``.

The modules, in the order a request meets them: ``cli`` (arguments) and ``server`` (listening,
shutdown); ``handler`` (HTTP) with ``auth`` (credentials, cross-site requests); ``request``
(statement and options of one request) reading ``body`` (transfer encoding), ``compression``
and ``sql`` (lexing); ``engine`` (chDB) with ``sessions``, ``access`` (per-user policy) and
``sandbox``; ``errors`` and ``limits`` throughout. ``process`` and ``secret`` are the launcher's
side: they import nothing heavy.
"""
