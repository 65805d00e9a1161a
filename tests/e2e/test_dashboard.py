"""The web dashboard against a real fleet (the real CLI and daemon): its door over plain HTTP
(token file, one-time links, sessions, Host and Origin checks, the routes it passes on), and
its views in a real browser (Debian's Chromium, headless, driven by Playwright).

Nothing is timed: each step waits, bounded, for what the page or the daemon must show.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import Project
from tests.support.browser import chromium, needs_browser

pytestmark = pytest.mark.e2e

FLEET = """
    name: webfleet
    agents:
      db:
        command: sh -c 'while true; do echo "db ready <img src=x onerror=alert(1)>"; sleep 1; done'
        # sick until the file is removed: a probe result the instance view shows
        liveness: {exec: "test ! -e sick", period: 1s, failure_threshold: 1, action: none}
      api:
        command: >-
          sh -c 'i=0; while true; do i=$$((i+1));
          echo "{\\"level\\":\\"info\\",\\"message\\":\\"served request $$i\\"}";
          [ $$((i % 3)) = 0 ]
          && echo "{\\"level\\":\\"error\\",\\"message\\":\\"upstream timeout $$i\\"}";
          sleep 0.3; done'
        depends_on: [db]
        replicas: 2
      worker:
        command: sleep 300
        depends_on: {api: {condition: started}, db: {condition: healthy}}
"""
WAIT_MS = 20_000


@pytest.fixture
def fleet(project: Project) -> Project:
    project.write(FLEET)
    project.corral("up", "-d")
    project.wait_for(
        lambda rows: len(rows) == 4 and {r["state"] for r in rows.values()} == {"running"},
        what="the fleet running",
    )
    return project


def link(project: Project, *args: str) -> str:
    """The one-time link ``corral dashboard`` prints."""
    out = project.corral("dashboard", *args).stdout
    found = re.search(r"http://127\.0\.0\.1:\d+/#code=\S+", out)
    assert found, out
    return found[0]


def code_of(url: str) -> str:
    return urlsplit(url).fragment.removeprefix("code=")


def ask(
    url: str,
    method: str = "GET",
    path: str = "/v1/status",
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One plain HTTP request to the dashboard's port (Host as a browser sends it unless
    ``headers`` says otherwise)."""
    where = urlsplit(url)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=30)
    try:
        sent = {"Host": where.netloc, **(headers or {})}
        data = json.dumps(body).encode() if body is not None else None
        if data is not None:
            sent["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=sent)
        reply = conn.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        conn.close()


def session(url: str) -> str:
    status, _, body = ask(url, "POST", "/session", {"code": code_of(url)})
    assert status == 200, body
    value: str = json.loads(body)["session"]
    return value


# --- the door, over plain HTTP ---------------------------------------------------------------


def test_token_file_is_private_and_no_request_gets_in_without_it(fleet: Project) -> None:
    url = link(fleet)
    token_file = fleet.state_dir / "dashboard.token"
    mode = stat.S_IMODE(os.stat(token_file).st_mode)
    assert mode == 0o600, oct(mode)
    token = token_file.read_text().strip()

    status, headers, body = ask(url)
    assert status == 401 and "corral dashboard" in json.loads(body)["fix"]
    assert headers["www-authenticate"].startswith("Bearer")
    for wrong in ("Bearer nope", f"Basic {token}", "Bearer ", token):
        assert ask(url, headers={"Authorization": wrong})[0] == 401, wrong
    assert ask(url, "POST", "/v1/restart", {"names": ["db"]})[0] == 401
    assert ask(url, path="/v1/events")[0] == 401
    # the token itself, as a script sends it
    status, _, body = ask(url, headers={"Authorization": f"Bearer {token}"})
    assert status == 200 and json.loads(body)["project"] == "webfleet"
    # the page and its assets carry no data: served to anyone at the dashboard's address
    status, headers, page = ask(url, path="/")
    assert status == 200 and b"/assets/app.js" in page
    assert "script-src 'self'" in headers["content-security-policy"]
    assert ask(url, path="/assets/app.js")[0] == 200
    assert ask(url, path="/assets/../state.db")[0] == 404


def test_a_link_opens_one_session_once(fleet: Project) -> None:
    url = link(fleet)
    code = code_of(url)
    first = session(url)
    assert ask(url, headers={"Authorization": f"Bearer {first}"})[0] == 200
    status, _, body = ask(url, "POST", "/session", {"code": code})
    assert status == 401 and "used already" in json.loads(body)["error"]
    for junk in ({"code": "made-up"}, {"code": ""}, {}, ["x"]):
        assert ask(url, "POST", "/session", junk)[0] == 401, junk
    # a second link is another session; the first stays good
    second = session(link(fleet))
    assert second != first
    for held in (first, second):
        assert ask(url, headers={"Authorization": f"Bearer {held}"})[0] == 200


def test_host_and_origin_are_the_dashboards_own(fleet: Project) -> None:
    url = link(fleet)
    auth = {"Authorization": f"Bearer {session(url)}"}
    port = urlsplit(url).port
    # DNS rebinding: a name of the attacker's that resolves to 127.0.0.1
    for host in (f"evil.example:{port}", "127.0.0.1", f"127.0.0.1:{port + 1}"):
        status, _, body = ask(url, headers={**auth, "Host": host})
        assert status == 403 and "own address" in json.loads(body)["error"], host
    assert ask(url, headers={**auth, "Host": f"localhost:{port}"})[0] == 200
    before = fleet.ps()["db.1"]["restarts"]
    for origin in ("http://evil.example", f"http://127.0.0.1:{port + 1}", "null"):
        status, _, _ = ask(
            url, "POST", "/v1/restart", {"names": ["db"]}, headers={**auth, "Origin": origin}
        )
        assert status == 403, origin
    status, _, _ = ask(
        url,
        "POST",
        "/v1/restart",
        {"names": ["db"]},
        headers={**auth, "Sec-Fetch-Site": "cross-site"},
    )
    assert status == 403
    assert fleet.ps()["db.1"]["restarts"] == before  # none of them got through
    status, _, body = ask(
        url,
        "POST",
        "/v1/restart",
        {"names": ["db"]},
        headers={**auth, "Origin": f"http://127.0.0.1:{port}"},
    )
    assert status == 200 and json.loads(body)["restarted"] == ["db.1"]


def test_the_door_passes_the_views_routes_only(fleet: Project) -> None:
    url = link(fleet)
    auth = {"Authorization": f"Bearer {session(url)}"}
    for method, path in (
        ("GET", "/v1/exec?agent=db"),
        ("POST", "/v1/down"),
        ("POST", "/v1/shutdown"),
        ("POST", "/v1/apply"),
        ("POST", "/v1/rm"),
        ("POST", "/v1/dashboard"),
    ):
        status, _, _ = ask(url, method, path, {} if method == "POST" else None, headers=auth)
        assert status == 404, path
    status, _, body = ask(url, path="/v1/usage", headers=auth)
    usage = json.loads(body)["instances"]
    assert status == 200 and set(usage) == {"api.1", "api.2", "db.1", "worker.1"}
    assert all(u["rss_bytes"] > 0 for u in usage.values())
    status, _, body = ask(url, headers=auth)
    assert json.loads(body)["agents"]["api"] == {
        "replicas": 2,
        "class": "io",
        "depends_on": {"db": "started"},
    }
    assert {r["state"] for r in fleet.ps().values()} == {"running"}


def test_the_port_is_the_manifests_or_the_one_asked(project: Project) -> None:
    from tests.support.prometheus import free_port

    port = free_port()
    project.write(FLEET.replace("    agents:", f"    dashboard: {{port: {port}}}\n    agents:", 1))
    project.corral("up", "-d")
    # served since the up, before any link was asked for
    status, _, _ = ask(f"http://127.0.0.1:{port}/", path="/")
    assert status == 200
    assert urlsplit(link(project)).port == port
    other = project.corral("dashboard", "--port", str(port + 1), check=False)
    assert other.returncode != 0 and f"served on port {port} already" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1
    bad = project.corral("dashboard", "--port", "0", check=False)
    assert bad.returncode == 2 and "not a port" in bad.stderr


def test_no_daemon_is_one_line(project: Project) -> None:
    project.write(FLEET)
    done = project.corral("dashboard", check=False)
    assert done.returncode == 3 and len(done.stderr.strip().splitlines()) == 1


# --- the views, in a real browser --------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.set_default_timeout(WAIT_MS)
    yield pg
    context.close()
    assert errors == [], errors


def cell(page: Any, instance: str, column: str) -> str:
    text: str = page.inner_text(f"tr.instance[data-name='{instance}'] td.col-{column}")
    return text


@needs_browser
def test_the_table_is_live_and_a_click_restarts_an_agent(fleet: Project, page: Any) -> None:
    page.goto(link(fleet))
    page.wait_for_selector("#link[data-live='yes']")
    assert "#code" not in page.url  # the code left the address bar
    rows = fleet.ps()
    for name in ("api.1", "api.2", "db.1"):
        assert cell(page, name, "state") == "running"
        assert cell(page, name, "pid") == str(rows[name]["pid"])
    assert cell(page, "db.1", "health") == "healthy"
    page.wait_for_function(
        "() => document.querySelector(\"tr[data-name='db.1'] td.col-mem\")"
        ".textContent.endsWith('M')"
    )

    old_pid = rows["db.1"]["pid"]
    page.click("tr.instance[data-name='db.1'] button[data-verb='restart']")
    page.wait_for_function(
        "([pid]) => { const row = document.querySelector(\"tr[data-name='db.1']\");"
        " return row.querySelector('td.col-restarts').textContent === '1' &&"
        " row.querySelector('td.col-state').textContent === 'running' &&"
        " row.querySelector('td.col-pid').textContent !== String(pid); }",
        arg=[old_pid],
    )
    after = fleet.ps()["db.1"]
    assert after["restarts"] == 1 and after["pid"] != old_pid
    assert cell(page, "db.1", "pid") == str(after["pid"])
    timings = page.evaluate("window.corral.timings")
    assert any(t["instance"] == "db.1" and t["pid"] == after["pid"] for t in timings)


@needs_browser
def test_a_used_link_opens_nothing_in_the_browser(fleet: Project, page: Any, browser: Any) -> None:
    url = link(fleet)
    page.goto(url)
    page.wait_for_selector("#link[data-live='yes']")
    again = browser.new_context().new_page()
    try:
        again.goto(url)
        again.wait_for_selector("#notice[data-problem='yes']")
        assert "used already" in again.inner_text("#notice")
        assert again.query_selector("tr.instance") is None
    finally:
        again.context.close()


def text_of(handle: Any, selector: str) -> str:
    text: str = handle.query_selector(selector).text_content()
    return text


def graph_node(page: Any, agent: str) -> Any:
    return page.query_selector(f"#graph .node[data-agent='{agent}']")


@needs_browser
def test_the_graph_draws_the_dependencies_with_their_states(fleet: Project, page: Any) -> None:
    page.goto(link(fleet))
    page.wait_for_selector("#link[data-live='yes']")
    page.click("nav a[data-view='graph']")
    page.wait_for_selector("#graph .node[data-agent='worker'][data-tone='ok']")
    assert not page.is_hidden("#view-graph") and page.is_hidden("#view-fleet")
    edges = {
        (
            e.get_attribute("data-from"),
            e.get_attribute("data-to"),
            e.query_selector("text").text_content(),
        )
        for e in page.query_selector_all("#graph .edge")
    }
    assert edges == {
        ("db", "api", "started"),
        ("api", "worker", "started"),
        ("db", "worker", "healthy"),
    }
    # in columns by depth: db, then api, then worker
    xs = [graph_node(page, a).bounding_box()["x"] for a in ("db", "api", "worker")]
    assert xs[0] < xs[1] < xs[2], xs
    assert text_of(graph_node(page, "api"), ".states") == "2 running"

    fleet.corral("stop", "worker")
    page.wait_for_selector("#graph .node[data-agent='worker'][data-tone='down']")
    assert "1 stopped" in text_of(graph_node(page, "worker"), ".states")
    graph_node(page, "db").click()
    page.wait_for_selector("#view-instance:not([hidden]) #instance-facts")
    assert page.url.endswith("#instance/db.1")


@needs_browser
def test_an_instance_shows_its_restarts_exits_probes_and_usage(fleet: Project, page: Any) -> None:
    fleet.corral("restart", "api.1")
    fleet.wait_for(
        lambda rows: rows["api.1"]["restarts"] == 1 and rows["api.1"]["state"] == "running",
        what="api.1 restarted",
    )
    page.goto(link(fleet))
    page.wait_for_selector("#link[data-live='yes']")
    page.goto(page.url.split("#")[0] + "#instance/api.1")
    page.wait_for_selector("#events-restarts tr")
    facts = {
        d.get_attribute("data-fact"): text_of(d, "dd")
        for d in page.query_selector_all("#instance-facts div")
    }
    row = fleet.ps()["api.1"]
    assert facts["state"] == "running" and facts["pid"] == str(row["pid"])
    assert facts["restarts"] == "1"
    assert "restarting on request" in page.inner_text("#events-restarts")
    # the usage sparklines fill as the samples come, one each two seconds
    page.wait_for_selector("figure.spark-cpu[data-samples='2']")
    page.wait_for_selector("figure.spark-mem polyline")
    assert page.inner_text("figure.spark-mem figcaption").startswith("memory: ")

    # an exit, then a restart, as they happen: the view follows the kept events
    fleet.corral("stop", "api.1")
    page.wait_for_selector("#events-exits tr")
    assert "signal 15" in page.inner_text("#events-exits") or "code" in page.inner_text(
        "#events-exits"
    )
    page.click("#view-instance button[data-verb='start']")
    page.wait_for_function(
        "() => document.querySelector(\"[data-fact='state'] dd\").textContent === 'running'"
    )

    # probe results: db's liveness probe failing, with its reason, then passing again
    page.goto(page.url.split("#")[0] + "#instance/db.1")
    page.wait_for_selector("[data-fact='health'] dd:text('healthy')")
    (fleet.root / "sick").write_text("")
    page.wait_for_selector("#events-probes tr[data-event='unhealthy']")
    assert "liveness probe failing" in page.inner_text("#events-probes")
    assert page.inner_text("[data-fact='health'] dd") == "unhealthy"
    (fleet.root / "sick").unlink()
    page.wait_for_selector("#events-probes tr[data-event='healthy']")
    page.wait_for_selector("[data-fact='health'] dd:text-is('healthy')")


@needs_browser
def test_the_log_view_filters_by_level_agent_instance_text_and_time(
    fleet: Project, page: Any
) -> None:
    page.goto(link(fleet))
    page.wait_for_selector("#link[data-live='yes']")
    page.click("nav a[data-view='logs']")
    page.wait_for_selector("#logs-table tr[data-instance='db.1']")
    page.wait_for_selector("#logs-table tr[data-instance='api.2']")

    def shown() -> list[tuple[str, str, str]]:
        rows: list[tuple[str, str, str]] = page.eval_on_selector_all(
            "#logs-table tr",
            "rows => rows.map(r => [r.dataset.instance, r.dataset.level,"
            " r.querySelector('.message').textContent])",
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]

    page.select_option("#logs-level", "error")
    page.select_option("#logs-agent", "api")
    page.select_option("#logs-instance", "api.2")
    page.click("#logs-search")
    page.wait_for_function("() => document.querySelectorAll('#logs-table tr').length >= 2")
    rows = shown()
    assert rows and all(
        i == "api.2" and lv == "error" and "upstream timeout" in m for i, lv, m in rows
    ), rows
    # followed: new error records of api.2 keep coming, and nothing else
    count = len(rows)
    page.wait_for_function(f"() => document.querySelectorAll('#logs-table tr').length > {count}")
    assert all(i == "api.2" and lv == "error" for i, lv, _ in shown())

    page.select_option("#logs-level", "")
    page.select_option("#logs-agent", "")
    page.select_option("#logs-instance", "")
    page.fill("#logs-grep", "served request [0-9]*5$")
    page.click("#logs-search")
    page.wait_for_selector("#logs-table tr")
    rows = shown()
    assert rows and all(m.startswith("served request") and m.endswith("5") for _, _, m in rows)
    assert {i for i, _, _ in rows} <= {"api.1", "api.2"}

    # markup an agent prints is shown as text, never made into elements
    page.fill("#logs-grep", "onerror")
    page.click("#logs-search")
    page.wait_for_selector("#logs-table tr[data-instance='db.1']")
    message = page.inner_text("#logs-table tr[data-instance='db.1'] .message")
    assert message == "db ready <img src=x onerror=alert(1)>"
    assert page.query_selector("#logs-table img") is None

    # a time range that holds nothing: stored records only, and none of them
    page.fill("#logs-grep", "")
    page.fill("#logs-since", "2001-01-01T00:00:00Z")
    page.fill("#logs-until", "2001-01-02T00:00:00Z")
    page.click("#logs-search")
    page.wait_for_selector("#logs-status:text('0 stored records')")
    assert shown() == []
    page.fill("#logs-since", "next tuesday")
    page.fill("#logs-until", "")
    page.uncheck("#logs-follow")
    page.click("#logs-search")
    page.wait_for_selector("#logs-status[data-problem='yes']")


@needs_browser
def test_the_buttons_stop_start_and_scale_through_the_protocol(fleet: Project, page: Any) -> None:
    page.goto(link(fleet))
    page.wait_for_selector("#link[data-live='yes']")
    page.click("tr.agent[data-agent='api'] button[data-verb='stop']")
    for name in ("api.1", "api.2"):
        page.wait_for_selector(f"tr.instance[data-name='{name}'][data-state='stopped']")
    assert {fleet.ps()[n]["state"] for n in ("api.1", "api.2")} == {"stopped"}
    assert "stop: api.1, api.2" in page.inner_text("#notice")

    page.click("tr.agent[data-agent='api'] button[data-verb='start']")
    for name in ("api.1", "api.2"):
        page.wait_for_selector(f"tr.instance[data-name='{name}'][data-state='running']")

    page.fill("tr.agent[data-agent='api'] input.replicas", "3")
    page.click("tr.agent[data-agent='api'] button.act-scale")
    page.wait_for_selector("tr.instance[data-name='api.3'][data-state='running']")
    assert fleet.ps()["api.3"]["state"] == "running"
    page.fill("tr.agent[data-agent='api'] input.replicas", "1")
    page.press("tr.agent[data-agent='api'] input.replicas", "Enter")
    page.wait_for_selector("tr.instance[data-name='api.2']", state="detached")
    assert set(fleet.ps()) == {"api.1", "db.1", "worker.1"}
    # a refusal is said on the page, with the daemon's fix
    page.fill("tr.agent[data-agent='api'] input.replicas", "20000")
    page.click("tr.agent[data-agent='api'] button.act-scale")
    page.wait_for_selector("#notice[data-problem='yes']")
    assert "scale api" in page.inner_text("#notice")


def test_open_hands_the_browser_a_private_file_not_the_code(fleet: Project) -> None:
    """``--open`` with the user's browser named by ``$BROWSER`` (a script that records what
    it was given, as a browser's command line would show it)."""
    given = fleet.root / "given.txt"
    opener = fleet.file("opener.sh", f'#!/bin/sh\nprintf "%s" "$1" > {given}\n')
    opener.chmod(0o755)
    out = fleet.corral("dashboard", "--open", env={"BROWSER": f"{opener} %s"}).stdout
    printed = re.search(r"http://127\.0\.0\.1:\d+/#code=\S+", out)
    assert printed, out
    argv = given.read_text()
    assert argv.startswith("file://") and "code=" not in argv
    page = Path(argv.removeprefix("file://"))
    assert stat.S_IMODE(os.stat(page).st_mode) == 0o600
    forwards = re.search(r'url=(http://127\.0\.0\.1:\d+/#code=[^"]+)"', page.read_text())
    assert forwards, page.read_text()
    url = forwards[1]
    assert session(url)  # the file's link is a live one, once
    assert ask(url, "POST", "/session", {"code": code_of(url)})[0] == 401


@needs_browser
def test_a_new_daemon_asks_the_page_for_a_new_link(fleet: Project, page: Any) -> None:
    """Sessions live in the daemon's memory: the page of a daemon that went away reconnects,
    and the next daemon on that port refuses its session, saying what to run."""
    url = link(fleet)
    port = str(urlsplit(url).port)
    page.goto(url)
    page.wait_for_selector("#link[data-live='yes']")
    pid = fleet.daemon_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # the agents run on, for the next daemon to re-adopt
    page.wait_for_selector("#link[data-live='no']")
    fleet.corral("up", "-d")
    fleet.corral("dashboard", "--port", port)
    page.wait_for_selector("#notice[data-problem='yes']")
    assert "corral dashboard" in page.inner_text("#notice")
    assert page.is_hidden("#view-fleet")
    # a new link at the new daemon opens it again, with the re-adopted instances
    page.goto(link(fleet))
    page.wait_for_selector("#link[data-live='yes']")
    assert cell(page, "db.1", "state") == "running"
