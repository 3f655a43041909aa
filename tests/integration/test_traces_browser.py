"""The trace pages in a real browser (Debian's chromium via Playwright) over the real pipeline:
bucket -> executions -> trace tree -> child execution. Also the JSON endpoints behind them, and
the pages' security headers over real HTTP."""

from __future__ import annotations

import contextlib
import shutil
import signal
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tally.api.server import server
from tally.api.settings import ApiSettings
from tally.clickhouse.settings import ClickHouseSettings
from tally.embedded.kafka_node import free_ports
from tally.ingest.jobs import JobTracker
from tally.read import ReadSettings
from tally.traces import SamplingPolicy, TraceRecorder, note, tag, trace
from tally.traces.ddl import TraceSchema

from .conftest import wait_for
from .traces_stack import apply_trace_ddl, create_traces_topic, shipper, start_writer

pytestmark = [pytest.mark.integration]
needs_chromium = pytest.mark.skipif(
    shutil.which("chromium") is None, reason="apt-get install -y chromium"
)
TOKEN = "read-token-for-the-browser-test"


class NoMetrics:
    def track(self, *args: object, **kwargs: object) -> bool:
        return True


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from tally.embedded.stack import StackConfig, start_stack
    from tally.web import WebSettings, web_handlers
    from tally.web.traces_pages import TRACE_PAGES

    workdir = tmp_path_factory.mktemp("traces-web")
    stack = start_stack(workdir, StackConfig(partitions=1, aggregators=0), aggregators=False)
    create_traces_topic(stack, partitions=2)
    apply_trace_ddl(stack)
    writer = start_writer(stack, workdir, "writer")
    port = free_ports(1)[0]
    read = ReadSettings(
        clickhouse=ClickHouseSettings(
            url=stack.clickhouse.url, user=stack.clickhouse.user, password=stack.clickhouse.password
        )
    )
    dashboards = workdir / "dashboards"
    dashboards.mkdir()
    pages = [*web_handlers(WebSettings(dashboards)), *TRACE_PAGES]  # as `tally up` mounts them
    api = server(ApiSettings(read, TOKEN, TOKEN + "-sql", "127.0.0.1", port), pages)
    thread = threading.Thread(target=api.run, daemon=True)
    thread.start()
    wait_for(lambda: api.started, 30, "the API")
    yield stack, f"http://127.0.0.1:{port}"
    api.should_exit = True
    thread.join(10)
    writer.send_signal(signal.SIGTERM)
    writer.wait(60)
    stack.stop()


def run_jobs(stack) -> None:
    ship = shipper(stack)
    jobs = JobTracker(
        NoMetrics(), "event::web", traces=TraceRecorder(ship, SamplingPolicy(every=1))
    )

    @jobs(name="web_schedule", tenant="acme")
    def schedule() -> None:
        tag("customer", "c-7")
        with trace("Loading tenants"):
            note("3 tenants")
        for n in range(2):
            with contextlib.suppress(LookupError):
                resource(n)

    @jobs(name="web_resource", tenant="acme")
    def resource(n: int) -> None:
        with trace("Fetching main product") as block:
            block.result({"product": n})
            with trace("Pricing"):
                if n == 1:
                    raise LookupError("no price")

    schedule()
    assert ship.flush(60)
    ship.close()


@needs_chromium
def test_browser_follows_bucket_to_executions_to_trace_tree(site):
    from playwright.sync_api import sync_playwright

    from tally.web.traces_pages import bucket_link

    stack, base = site
    run_jobs(stack)
    client = stack.clickhouse_client()
    table = TraceSchema().table("trace_executions")
    wait_for(
        lambda: (
            client.query(f"SELECT count() FROM {table} WHERE key = 'event::web'").result_rows[0][0]
            >= 3
        ),
        90,
        "executions stored",
    )
    headers = {"Authorization": f"Bearer {TOKEN}"}
    listed = httpx.get(
        f"{base}/api/v1/executions",
        params={"key": "event::web", "status": "failure"},
        headers=headers,
    )
    assert listed.status_code == 200, listed.text
    (failed,) = listed.json()["executions"]
    assert failed["job"] == "web_resource" and failed["error"] == "LookupError"
    detail = httpx.get(f"{base}/api/v1/executions/{failed['execution_id']}", headers=headers).json()
    assert [n["name"] for n in detail["tree"]] == ["Fetching main product"]
    assert detail["tree"][0]["children"][1]["outcome"] == "LookupError"
    now = datetime.now(UTC)
    log = httpx.get(
        f"{base}/api/v1/joblog",
        params={
            "job": "web_resource",
            "status": "failure",
            "since": (now - timedelta(hours=1)).isoformat(),
        },
        headers=headers,
    ).json()
    assert [e["event"] for e in log] == ["failed", "started"]
    assert httpx.get(f"{base}/api/v1/executions", params={"key": "x"}).status_code == 401
    bad = httpx.get(f"{base}/api/v1/joblog", params={"tag": "no-equals"}, headers=headers)
    assert bad.status_code == 400  # a clear error, nothing else lost
    missing = httpx.get(f"{base}/api/v1/executions/{'0' * 32}", headers=headers)
    assert missing.status_code == 404

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            page = browser.new_context(extra_http_headers=headers).new_page()
            # the link a dashboard bucket carries: tenant key, ISO range
            link = bucket_link(
                "event::web::acme", now - timedelta(hours=1), now + timedelta(minutes=5)
            )
            page.goto(f"{base}{link}")
            rows = page.locator("#executions tr.execution")
            assert rows.count() == 3
            page.locator("#executions tr.execution", has_text="web_schedule").get_by_role(
                "link"
            ).click()
            page.wait_for_selector("#trace")
            assert page.locator("h1").inner_text().startswith("web_schedule")
            assert page.locator("#trace .name").all_inner_texts() == ["Loading tenants"]
            assert "3 tenants" in page.locator("#trace pre").inner_text()
            kids = page.locator("#children tr")
            assert kids.count() == 2
            kids.filter(has_text="failure").get_by_role("link").click()
            page.wait_for_selector("#trace")
            names = page.locator("#trace .name").all_inner_texts()
            assert names == ["Fetching main product", "Pricing"]
            assert "LookupError" in page.locator("#trace li.block").nth(1).inner_text()
            # the tree collapses with the page's script
            bar = page.locator("#trace li.block .bar").first.bounding_box()
            assert bar is not None and bar["width"] >= 1  # drawn under the page's own CSP
            page.locator("#trace > li > .toggle").click()
            assert not page.locator("#trace .name", has_text="Pricing").is_visible()
            assert "parent" in page.locator("#summary").inner_text()
            time.sleep(0)  # nothing timing-based asserted
        finally:
            browser.close()


def test_trace_pages_send_the_dashboards_security_headers(site):
    stack, base = site
    ship = shipper(stack)
    jobs = JobTracker(
        NoMetrics(), "event::headers", traces=TraceRecorder(ship, SamplingPolicy(every=1))
    )

    @jobs(name="headers_job")
    def job() -> None:
        with trace("one block"):
            note("<script>alert(1)</script>")

    job()
    assert ship.flush(60)
    ship.close()
    client = stack.clickhouse_client()
    table = TraceSchema().table("trace_executions")
    sql = f"SELECT execution_id FROM {table} WHERE key = 'event::headers'"
    wait_for(lambda: bool(client.query(sql).result_rows), 90, "the execution stored")
    (execution_id,) = client.query(sql).result_rows[0]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for path in ("/traces", "/traces?key=event::headers", f"/traces/{execution_id}"):
        page = httpx.get(f"{base}{path}", headers=auth)
        assert page.status_code == 200, (path, page.text)
        csp = page.headers.get("content-security-policy", "")
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
        assert "unsafe-inline" not in csp
        assert page.headers.get("x-content-type-options") == "nosniff", path
    script = httpx.get(f"{base}/ui/static/traces.js", headers=auth)
    assert script.headers.get("x-content-type-options") == "nosniff"


MANY = 250


def insert_many(stack, key: str) -> None:
    """``MANY`` hand-built executions of ``key`` in the last minutes; pairs share a start time
    (the keyset's tie-break on execution_id), every 5th failed, every 10th tagged c-9."""
    client = stack.clickhouse_client()
    client.command(
        f"""INSERT INTO {TraceSchema().table("trace_executions")}
        (execution_id, job, tenant, key, state, attempt, started, duration_us, tags)
        SELECT lower(hex(toUInt128(number + 1))), if(number % 5 = 0, 'many_failing', 'many_job'),
          concat('t', toString(number % 3)), {{key:String}},
          if(number % 5 = 0, 'failure', 'success'), 1,
          now64(6, 'UTC') - toIntervalSecond(intDiv(number, 2) + 5), 1000,
          if(number % 10 = 0, map('customer', 'c-9'), map())
        FROM numbers({MANY})""",
        parameters={"key": key},
        settings={"async_insert": 0},
    )


def test_executions_api_pages_by_cursor_and_says_n_of_m(site):
    stack, base = site
    insert_many(stack, "event::many")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    seen: list[tuple[str, str]] = []
    cursor = None
    pages = 0
    while True:
        params = {"key": "event::many", "limit": 100} | ({"cursor": cursor} if cursor else {})
        got = httpx.get(f"{base}/api/v1/executions", params=params, headers=auth)
        assert got.status_code == 200, got.text
        body = got.json()
        assert body["total"] == MANY
        seen += [(r["started"], r["execution_id"]) for r in body["executions"]]
        pages += 1
        cursor = body["next"]
        if cursor is None:
            break
        assert pages < 10, "the cursor does not advance"
    assert pages == 3 and len(seen) == MANY
    assert len({i for _, i in seen}) == MANY  # nothing twice, nothing lost across the ties
    assert seen == sorted(seen, reverse=True)  # newest first, execution_id breaks ties
    tagged = httpx.get(
        f"{base}/api/v1/executions",
        params={"key": "event::many", "tag": "customer=c-9", "status": "failure"},
        headers=auth,
    ).json()
    assert tagged["total"] == MANY // 10 and tagged["next"] is None
    assert {r["tags"]["customer"] for r in tagged["executions"]} == {"c-9"}
    for bad in ("not-a-cursor", "WzEsMl0"):  # garbage; a cursor of another list ([1,2])
        answer = httpx.get(
            f"{base}/api/v1/executions", params={"key": "event::many", "cursor": bad}, headers=auth
        )
        assert answer.status_code == 400 and "cursor" in answer.text


def test_tally_traces_list_says_n_of_m_and_takes_a_cursor(site):
    from typer.testing import CliRunner

    from tally.cli.main import app

    stack, _ = site
    insert_many(stack, "event::cli")
    env = {"TALLY_CLICKHOUSE_PASSWORD": stack.clickhouse.password}
    where = ["--clickhouse-url", stack.clickhouse.url, "--clickhouse-user", stack.clickhouse.user]
    runner = CliRunner()
    first = runner.invoke(app, ["traces", "list", "event::cli", "--limit", "200", *where], env=env)
    assert first.exit_code == 0, first.output
    assert f"200 of {MANY} executions" in first.output
    cursor = first.output.split("--cursor ")[1].split()[0]
    rest = runner.invoke(app, ["traces", "list", "event::cli", "--cursor", cursor, *where], env=env)
    assert rest.exit_code == 0, rest.output
    assert f"{MANY - 200} of {MANY} executions" in rest.output and "--cursor" not in rest.output
    ids = {line.split()[2] for line in (first.output + rest.output).splitlines() if "many_" in line}
    assert len(ids) == MANY
    bad = runner.invoke(app, ["traces", "list", "event::cli", "--cursor", "zz", *where], env=env)
    assert bad.exit_code == 2


@needs_chromium
def test_trace_pages_are_the_dashboards_ui_with_pages_selects_and_tag_search(site):
    from playwright.sync_api import sync_playwright

    stack, base = site
    insert_many(stack, "event::paged")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            context = browser.new_context(extra_http_headers=headers)
            page = context.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(f"{base}/traces?key=event::paged&since=2h")
            # the dashboards' header, navigation and stylesheet
            assert page.locator("header.top a.brand").inner_text() == "tally"
            nav = page.locator("header.top nav")
            assert nav.get_by_role("link", name="Dashboards").get_attribute("href") == "/ui/"
            assert nav.get_by_role("link", name="Traces").get_attribute("aria-current") == "page"
            background = page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert background == "rgb(246, 247, 249)"  # app.css's --bg
            # N of M, and a Next link that continues where the page ended
            assert page.locator("#count").inner_text().startswith(f"100 of {MANY} executions")
            first = page.locator("#executions tr.execution td:first-child").all_inner_texts()
            page.locator("a#next").click()
            page.wait_for_load_state()
            assert page.locator("#count").inner_text().startswith(f"100 of {MANY}")
            second = page.locator("#executions tr.execution td:first-child").all_inner_texts()
            assert second[0] <= first[-1]
            page.locator("a#next").click()
            page.wait_for_load_state()
            assert page.locator("#count").inner_text().startswith(f"{MANY - 200} of {MANY}")
            assert page.locator("a#next").count() == 0
            # state is a select of the known states; tenants come from discovery
            options = page.locator("select#state option").all_inner_texts()
            assert {"success", "failure", "retry", "limited", "skipped"} <= set(options)
            tenants = page.locator("datalist#tenants option")
            assert [tenants.nth(i).get_attribute("value") for i in range(3)] == ["t0", "t1", "t2"]
            assert page.locator("#tenant").get_attribute("list") == "tenants"
            # tag search, like `tally traces log --tag`
            page.select_option("select#state", "failure")
            page.fill("#tag", "customer=c-9")
            page.locator("#bucket button[type=submit]").click()
            page.wait_for_load_state()
            assert "tag=customer%3Dc-9" in page.url
            assert page.locator("#count").inner_text().startswith(f"{MANY // 10} of {MANY // 10}")
            assert page.locator("select#state").input_value() == "failure"
            page.fill("#tag", "no-equals")
            page.locator("#bucket button[type=submit]").click()
            page.wait_for_load_state()
            assert "name=value" in page.locator("p.error").inner_text()
            assert errors == []
        finally:
            browser.close()


@needs_chromium
def test_trace_pages_fit_a_phone_and_follow_dark_mode(site):
    from playwright.sync_api import sync_playwright

    stack, base = site
    insert_many(stack, "event::phone")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    client = stack.clickhouse_client()
    table = TraceSchema().table("trace_executions")
    (execution_id,) = client.query(
        f"SELECT execution_id FROM {table} WHERE key = 'event::phone' LIMIT 1"
    ).result_rows[0]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            context = browser.new_context(
                extra_http_headers=headers,
                viewport={"width": 390, "height": 844},
                color_scheme="dark",
            )
            page = context.new_page()
            for path in ("/traces?key=event::phone&since=2h", f"/traces/{execution_id}"):
                page.goto(base + path)
                width = page.evaluate("document.documentElement.scrollWidth")
                assert width <= 390, (path, width)  # wide tables scroll in their own box
                background = page.evaluate("getComputedStyle(document.body).backgroundColor")
                assert background == "rgb(18, 22, 28)", path  # the dark --bg
            icon = httpx.get(f"{base}/favicon.ico")
            assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg")
        finally:
            browser.close()


class PaymentDeclined(Exception):
    """The issue's failure: ``card declined for order 100296``."""


def run_failing_jobs(stack) -> None:
    ship = shipper(stack)
    jobs = JobTracker(
        NoMetrics(), "event::pay", traces=TraceRecorder(ship, SamplingPolicy(every=1))
    )

    @jobs(name="pay_charge", tenant="acme")
    def pay(order: int, card_token: str, text: str = "") -> None:
        if text:
            raise PaymentDeclined(text)
        if order == 7:
            raise PaymentDeclined("Insufficient funds")
        raise PaymentDeclined(f"card declined for order {order} <b>&amp;</b>")

    for order, text in ((100296, ""), (7, ""), (8, "x" * 40_000)):
        with contextlib.suppress(PaymentDeclined):
            pay(order, card_token="tok_live_4242_secret", text=text)
    assert ship.flush(60)
    ship.close()


def test_a_failed_execution_shows_its_message_traceback_ref_and_args(site):
    """Issue #19 item 2 through Kafka, the trace writer and ClickHouse: the message and a
    bounded traceback are stored, searchable through the API (bound parameters), and the
    trace page shows them escaped, with the job's (redacted) arguments."""
    from playwright.sync_api import sync_playwright

    stack, base = site
    run_failing_jobs(stack)
    client = stack.clickhouse_client()
    table = TraceSchema().table("trace_executions")
    wait_for(
        lambda: (
            client.query(f"SELECT count() FROM {table} WHERE key = 'event::pay'").result_rows[0][0]
            >= 3
        ),
        90,
        "executions stored",
    )
    headers = {"Authorization": f"Bearer {TOKEN}"}

    def search(text: str) -> list[dict]:
        reply = httpx.get(
            f"{base}/api/v1/executions",
            params={"key": "event::pay", "message": text},
            headers=headers,
        )
        assert reply.status_code == 200, reply.text
        return reply.json()["executions"]

    # The API reads as its own user through the read path: wait until it sees the execution
    # too, not only the direct count above (a bound of ~10x its normal time).
    wait_for(lambda: bool(search("card declined")), 60, "the execution found by its message")
    (declined,) = search("card declined")
    assert declined["error_message"] == "card declined for order 100296 <b>&amp;</b>"
    assert [r["error_message"] for r in search("INSUFFICIENT")] == ["Insufficient funds"]
    assert len(search("PaymentDeclined")) == 3  # the error's type matches too
    assert search("' OR 1=1 --") == []  # a bound parameter, not SQL
    detail = httpx.get(f"{base}/api/v1/executions/{declined['execution_id']}", headers=headers)
    execution = detail.json()["execution"]
    traceback = execution["error_traceback"]
    assert traceback.startswith("Traceback (most recent call last):")
    assert ", in pay\n" in traceback
    assert traceback.endswith("PaymentDeclined: card declined for order 100296 <b>&amp;</b>\n")
    assert '"card_token":"[redacted]"' in execution["args"] and "100296" in execution["args"]
    assert "tok_live" not in detail.text

    (long,) = [r for r in search("xxxx") if r["error_message"].startswith("x")]
    assert len(long["error_message"].encode()) == 1024 and long["error_message"].endswith(
        "…[truncated]"
    )
    long_tb = httpx.get(f"{base}/api/v1/executions/{long['execution_id']}", headers=headers)
    cut_tb = long_tb.json()["execution"]["error_traceback"]
    assert len(cut_tb.encode()) <= 16 * 1024
    assert cut_tb.startswith("…[truncated] ") and cut_tb.endswith("x" * 100 + "\n")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            page = browser.new_context(extra_http_headers=headers).new_page()
            page.goto(f"{base}/traces/{declined['execution_id']}")
            shown = page.locator("#error-message")
            assert shown.inner_text() == "card declined for order 100296 <b>&amp;</b>"
            assert page.locator("#error-message b").count() == 0  # escaped, not markup
            pre = page.locator("#traceback").inner_text()
            assert "PaymentDeclined: card declined for order 100296" in pre and "in pay" in pre
            assert '"card_token":"[redacted]"' in page.locator("#args").inner_text()
            page.goto(f"{base}/traces?key=event::pay&since=1h&message=card+declined")
            rows = page.locator("#executions tr.execution")
            assert rows.count() == 1 and "card declined" in rows.inner_text()
        finally:
            browser.close()


def test_old_trace_tables_get_the_error_columns(site):
    """Tables created before the error columns existed gain them from ``alter_statements``."""
    stack, _ = site
    client = stack.clickhouse_client()
    schema = TraceSchema(database="tally_before_errors")
    for statement in schema.statements():
        client.command(statement)
    table = schema.table("trace_executions")
    for column in ("error_message", "error_traceback", "args"):
        client.command(f"ALTER TABLE {table} DROP COLUMN {column}")
    for statement in schema.alter_statements():
        client.command(statement)
    names = {r[0] for r in client.query(f"DESCRIBE TABLE {table}").result_rows}
    assert {"error_message", "error_traceback", "args"} <= names
