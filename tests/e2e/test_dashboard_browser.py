"""The web dashboard in a real headless Chromium against a real ``orchestrion serve``.

One server and one browser for the module (both are slow to start). The browser is Debian's
``chromium`` driven through ``chromium-driver`` by Selenium, pointed at those binaries: nothing
is downloaded. Without them the module skips, except under ``CI=true``, where it fails.
Screenshots of each page are written to a temporary folder whose path is printed.

What a user sees: signing in, nodes turning green live, a node's output, approving, retrying
a failed run, filtering the list, replaying the journal. What an attacker meets: workflow
values carrying markup stay text, a viewer gets no action and the API refuses its requests,
a state-changing request without the CSRF token is refused.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from test_api_server import Server

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
TEMPLATES = Path(__file__).resolve().parents[2] / "src" / "orchestrion" / "web" / "templates"
KEYS = "adm-key:admin:alice,view-key:viewer:victor,op-key:operator:olga"
ADMIN = {"Authorization": "Bearer adm-key"}

PAYLOADS = {
    "script": "<script>window.__pwned = 1</script>",
    "attribute": '"><img src=x onerror="window.__pwned = 2">',
    "url": "javascript:window.__pwned = 3",
}
CHAIN = {
    "name": "chain",
    "dag": {
        "nodes": [
            {"id": "input", "handler": "input"},
            {
                "id": "first",
                "handler": "python",
                "dependencies": ["input"],
                # Rendered from the inputs: the panel shows the value it rendered to.
                "config": {
                    "function": "sleep",
                    "params": {"seconds": "{{ input.pause | default(0.4) }}"},
                },
            },
            {
                "id": "second",
                "handler": "python",
                "dependencies": ["first"],
                "config": {"function": "sleep", "params": {"seconds": 0.4}},
            },
            {
                "id": "talker",
                "handler": "python",
                "dependencies": ["input"],
                "config": {"function": "dash_talker.talk"},
            },
            {
                "id": "hostile",
                "name": '<img src=x onerror="window.__pwned = 4">',
                "handler": "noop",
                "dependencies": ["second"],
                "config": {"value": PAYLOADS},
            },
        ]
    },
}
APPROVAL = {
    "name": "needs-approval",
    "dag": {
        "nodes": [
            {"id": "ask", "handler": "approval"},
            {"id": "after", "handler": "noop", "dependencies": ["ask"]},
        ]
    },
}
FLAKY = {
    "name": "flaky-once",
    "dag": {
        "nodes": [
            {
                "id": "flaky",
                "handler": "python",
                "config": {"function": "flaky", "params": {"failures": 1}},
                "retry": {"max_attempts": 1},
            }
        ]
    },
}

T = TypeVar("T")


def _browser_missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(path):
            return f"{path} is not installed (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed"
    return None


@pytest.fixture(scope="module")
def shots() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="orchestrion-dashboard-shots-"))
    print(f"\ndashboard screenshots: {folder}")
    return folder


# A python function of the operator's, allowed by the policy, that logs (node logs).
TALKER = """\
import logging

log = logging.getLogger("talker")


def talk() -> str:
    log.info("<script>window.__pwned = 5</script> mail ada@example.com")
    log.warning("done talking")
    return "talked"
"""


# The functions of a realistic workflow (the README's picture): an order is fulfilled.
SHOP = """\
import logging
import time
from datetime import datetime

log = logging.getLogger("shop")
_charges = {}


def validate(order: str, lines: int) -> dict:
    log.info("order %s: %d lines, all in the catalogue", order, lines)
    return {"order": order, "valid": True}


def reserve(order: str, warehouse: str) -> dict:
    time.sleep(0.2)
    log.info("order %s: reserved in %s", order, warehouse)
    return {"reservation": f"R-{order}", "warehouse": warehouse}


def charge(order: str, amount: float, currency: str, customer: str) -> dict:
    seen = _charges[order] = _charges.get(order, 0) + 1
    log.info("charging %.2f %s to customer %s (attempt %d)", amount, currency, customer, seen)
    if seen == 1:
        raise TimeoutError("the payment provider did not answer within 5 s")
    time.sleep(0.2)
    log.info("captured, payment P-%s", order)
    return {"payment": f"P-{order}", "amount": amount, "currency": currency}


def ship(order: str, city: str, carrier: str) -> dict:
    log.info("order %s: label printed for %s via %s", order, city, carrier)
    return {"tracking": f"{carrier.upper()}-{order}-7731", "city": city}


def notify(customer: str, tracking: str) -> str:
    log.info("mail sent to customer %s: tracking %s", customer, tracking)
    return "sent"
"""
ORDER = {
    "name": "order-fulfilment",
    "dag": {
        "nodes": [
            {"id": "input", "handler": "input"},
            {
                "id": "validate",
                "handler": "python",
                "dependencies": ["input"],
                "config": {
                    "function": "dash_shop.validate",
                    "params": {"order": "{{ input.order }}", "lines": "{{ input.lines }}"},
                },
            },
            {
                "id": "reserve_stock",
                "handler": "python",
                "dependencies": ["validate"],
                "config": {
                    "function": "dash_shop.reserve",
                    "params": {"order": "{{ input.order }}", "warehouse": "{{ input.warehouse }}"},
                },
            },
            {
                "id": "charge_card",
                "handler": "python",
                "dependencies": ["validate"],
                "retry": {"max_attempts": 3, "initial_delay": 0.3, "retry_on": ["all"]},
                "config": {
                    "function": "dash_shop.charge",
                    "params": {
                        "order": "{{ input.order }}",
                        "amount": "{{ input.total }}",
                        "currency": "{{ input.currency }}",
                        "customer": "{{ input.customer }}",
                    },
                },
            },
            {
                "id": "ship",
                "handler": "python",
                "dependencies": ["reserve_stock", "charge_card"],
                "config": {
                    "function": "dash_shop.ship",
                    "params": {
                        "order": "{{ input.order }}",
                        "city": "{{ input.city }}",
                        "carrier": "{{ 'dhl' if input.total > 100 else 'post' }}",
                    },
                },
            },
            {
                "id": "notify_customer",
                "handler": "python",
                "dependencies": ["ship"],
                "config": {
                    "function": "dash_shop.notify",
                    "params": {
                        "customer": "{{ input.customer }}",
                        "tracking": "{{ ship.output.tracking }}",
                    },
                },
            },
        ]
    },
}
ORDER_INPUTS = {
    "order": "SO-1042",
    "lines": 3,
    "warehouse": "Rotterdam",
    "total": 129.9,
    "currency": "EUR",
    "customer": "C-2077",
    "city": "Utrecht",
}


# A node that fails until its marker file exists: a dead letter, then a fixed one.
FIXABLE = """\
import os


def until_fixed(path: str) -> str:
    if not os.path.exists(path):
        raise RuntimeError("the marker file is missing: " + path)
    return "fixed"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("dashboard")
    (folder / "dash_talker.py").write_text(TALKER)
    (folder / "dash_shop.py").write_text(SHOP)
    (folder / "dash_fixable.py").write_text(FIXABLE)
    (folder / "governance.yaml").write_text(
        "version: 1\npython:\n  allowed_modules: [dash_talker, dash_shop, dash_fixable]\n"
    )
    env = {
        "ORCHESTRION_API_KEYS": KEYS,
        "ORCHESTRION_SCHEDULER_INTERVAL": "0.2",
        "ORCHESTRION_SSE_POLL": "0.5",
        "ORCHESTRION_GOVERNANCE_FILE": str(folder / "governance.yaml"),
        "PYTHONPATH": str(folder),
    }
    running = Server(folder, folder / "dash.db", env)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = _browser_missing()
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the dashboard's browser tests need Chromium: {missing}")
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="orchestrion-chromium-")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(10)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_script_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each browser test: no uncaught script error, no Content Security Policy
    violation (an inline script or style the policy blocked) in the browser's console."""
    yield
    if "browser" not in request.fixturenames:
        return
    driver = request.getfixturevalue("browser")
    bad = [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["source"] != "network"  # refused requests are what some tests ask for
        and entry["level"] in ("SEVERE", "WARNING")
    ]
    assert not bad, bad


def until(check: Callable[[], T | None], what: str, timeout: float = 15, seen: Any = None) -> T:
    """``check``'s first true value within ``timeout`` s; with ``seen`` (the browser), a
    timeout also says which page it was on and what the page showed."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # the page is between two renders: look again
            last = exc
        time.sleep(0.05)
    where = ""
    if seen is not None:
        shown = seen.execute_script("return document.body ? document.body.innerText : ''")
        where = f"; at {seen.current_url}, showing {str(shown)[:300]!r}"
    raise AssertionError(f"timed out waiting for {what} (last error: {last!r}){where}")


def start(server: Server, definition: dict[str, Any], inputs: Any = None) -> str:
    submitted = httpx.post(f"{server.url}/v1/workflow", json=definition, headers=ADMIN)
    assert submitted.status_code == 201, submitted.text
    execution_id = str(submitted.json()["execution_id"])
    body = {"input_params": inputs} if inputs is not None else None
    started = httpx.post(
        f"{server.url}/v1/workflow/trigger/{execution_id}", json=body, headers=ADMIN
    )
    assert started.status_code == 202, started.text
    return execution_id


def status_of(server: Server, execution_id: str) -> str:
    answer = httpx.get(f"{server.url}/v1/workflows/{execution_id}", headers=ADMIN)
    return str(answer.json()["status"])


def sign_in(browser: Any, server: Server, key: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{server.url}/ui/")
    until(lambda: "/ui/login" in browser.current_url, "the sign-in page")
    until(lambda: browser.find_elements(By.ID, "api-key"), "the sign-in form", timeout=30)
    browser.find_element(By.ID, "api-key").send_keys(key)
    browser.find_element(By.ID, "sign-in").click()
    until(lambda: browser.current_url.endswith("/ui/"), "the executions page")
    until(lambda: browser.find_element(By.ID, "who").text, "who is signed in")


def sign_out(browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.find_element(By.ID, "logout").click()
    until(lambda: "/ui/login" in browser.current_url, "the sign-in page after signing out")
    # The address changes before the sign-in page has loaded: wait for its form.
    until(lambda: browser.find_elements(By.ID, "api-key"), "the sign-in form", seen=browser)


def node_state(browser: Any, node: str) -> str:
    return str(
        browser.execute_script(
            "const g = document.querySelector(`g[data-node='${arguments[0]}']`);"
            "return g ? (g.dataset.state || 'PENDING') : null;",
            node,
        )
    )


def open_execution(browser: Any, server: Server, execution_id: str) -> None:
    browser.get(f"{server.url}/ui/executions/{execution_id}")
    until(
        lambda: browser.execute_script("return document.body.dataset.loaded === 'true'"),
        "the execution page",
    )


def click_node(browser: Any, node: str) -> None:
    from selenium.webdriver.common.by import By

    browser.find_element(By.CSS_SELECTOR, f"g[data-node='{node}']").click()
    until(lambda: browser.find_element(By.ID, "panel-node").text == node, f"{node}'s panel")


def panel_text(browser: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    found = browser.find_elements(By.ID, element_id)
    return str(found[0].text) if found else ""


def logs_text(browser: Any) -> str | None:
    from selenium.webdriver.common.by import By

    text = str(browser.find_element(By.ID, "panel-logs").text)
    return text if "done talking" in text else None


def press(browser: Any, element_id: str) -> None:
    """Click a button the page may be re-rendering (its actions follow the execution's
    changes): find it again until the click lands."""
    from selenium.webdriver.common.by import By

    def attempt() -> bool:
        browser.find_element(By.ID, element_id).click()
        return True

    until(attempt, f"a click on #{element_id}")


def type_into(browser: Any, element_id: str, text: str) -> None:
    """Type into a field the page may be re-rendering: until the field holds the text."""
    from selenium.webdriver.common.by import By

    def attempt() -> bool:
        field = browser.find_element(By.ID, element_id)
        if field.get_attribute("value") != text:
            field.clear()
            field.send_keys(text)
        return bool(browser.find_element(By.ID, element_id).get_attribute("value") == text)

    until(attempt, f"#{element_id} holding {text!r}")


def fetch(browser: Any, method: str, path: str, csrf: bool) -> dict[str, Any]:
    """A request from the page itself: same origin, the session cookie, with or without the
    session's CSRF token."""
    result: dict[str, Any] = browser.execute_async_script(
        """
        const [method, path, csrf, done] = arguments;
        (async () => {
          const who = await (await fetch('/v1/session')).json();
          const headers = {'Content-Type': 'application/json'};
          if (csrf) headers['X-CSRF-Token'] = who.csrf_token;
          const r = await fetch(path, {method, headers, body: '{}'});
          done({status: r.status, body: await r.text()});
        })().catch((e) => done({status: -1, body: String(e)}));
        """,
        method,
        path,
        csrf,
    )
    return result


def test_pages_have_no_inline_script_or_style() -> None:
    """The CSP forbids inline code; the templates must not need it (and nothing else does)."""
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text()
        for script in re.findall(r"<script\b[^>]*>", text):
            assert "src=" in script, (template.name, script)
        assert not re.search(r"\sstyle=|\son[a-z]+=|javascript:", text), template.name


def test_security_headers_and_redirects(server: Server) -> None:
    home = httpx.get(f"{server.url}/", follow_redirects=False)
    assert home.status_code == 307 and home.headers["location"] == "/ui/"
    page = httpx.get(f"{server.url}/ui/")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    script = httpx.get(f"{server.url}/ui/static/app.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.headers["x-content-type-options"] == "nosniff"
    # A name is free text: it comes back as an escaped attribute, never as markup.
    page = httpx.get(f"{server.url}/ui/definitions/a%22%3E%3Cscript%3Ex%3C/script%3E/b")
    assert page.status_code == 200
    assert 'data-subject="a&#34;&gt;&lt;script&gt;x&lt;/script&gt;/b"' in page.text
    assert httpx.get(f"{server.url}/ui/executions/{'x' * 401}").status_code == 404


def test_sign_in_watch_nodes_turn_green_and_read_output_as_text(
    browser: Any, server: Server, shots: Path
) -> None:
    sign_in(browser, server, "adm-key")
    browser.save_screenshot(str(shots / "executions.png"))
    execution_id = start(server, CHAIN, {"note": PAYLOADS["attribute"], "pause": 0.35})
    open_execution(browser, server, execution_id)
    seen = set()
    for node in ("first", "second", "hostile"):
        # Live: each node is seen running or done as the stream reports it, without reload.
        seen.add(until(lambda n=node: node_state(browser, n) == "COMPLETED", f"{node} green"))
    assert seen == {True}
    from selenium.webdriver.common.by import By

    badge = until(lambda: browser.find_element(By.ID, "x-status").text == "COMPLETED", "done")
    assert badge
    click_node(browser, "hostile")
    output = until(
        lambda: (
            "window.__pwned" in browser.find_element(By.ID, "panel-output").text
            and browser.find_element(By.ID, "panel-output").text
        ),
        "the hostile node's output",
    )
    for payload in PAYLOADS.values():
        assert payload.replace('"', '\\"') in output  # shown as JSON text, quotes escaped
    injected = browser.execute_script(
        "return {pwned: window.__pwned, scripts: document.querySelectorAll('main script').length,"
        " imgs: document.querySelectorAll('img').length,"
        " js: [...document.querySelectorAll('a')].filter("
        "   (a) => a.getAttribute('href').toLowerCase().includes('javascript')).length};"
    )
    assert injected == {"pwned": None, "scripts": 0, "imgs": 0, "js": 0}
    assert browser.find_element(By.ID, "panel-logs").text in ("loading…", "(no log lines)")
    # Its config as rendered: text too (the payloads are its literal config values).
    rendered = until(lambda: "window.__pwned" in panel_text(browser, "panel-rendered"), "inputs")
    assert rendered
    click_node(browser, "first")
    until(lambda: '"seconds": 0.35' in panel_text(browser, "panel-rendered"), "first's inputs")
    declared = browser.find_element(By.ID, "panel").text
    assert "{{ input.pause | default(0.4) }}" in declared  # the declared config, beside it
    # A node's log lines, as text: the admin sees them unmasked.
    click_node(browser, "talker")
    logs = until(lambda: logs_text(browser), "the talker's log lines")
    # Shown as written, but masked as they were captured (the address never reached the store).
    assert "INFO talker: <script>window.__pwned = 5</script> mail [email]" in logs
    assert "WARNING talker: done talking" in logs
    label = browser.find_element(By.CSS_SELECTOR, "g[data-node='hostile'] text.label").text
    assert label.startswith("<img")  # the node's name, as text
    browser.save_screenshot(str(shots / "execution.png"))

    # Replay: the start of the journal has nothing done; its end is the live picture.
    browser.execute_script(
        "const r = document.getElementById('replay'); r.value = '1';"
        "r.dispatchEvent(new Event('input'));"
    )
    until(lambda: node_state(browser, "hostile") == "PENDING", "the replay's beginning")
    assert node_state(browser, "first") == "PENDING"
    total = int(browser.find_element(By.ID, "replay").get_attribute("max"))
    middle = browser.execute_script(
        "const r = document.getElementById('replay');"
        "const events = arguments[0];"
        "r.value = String(events); r.dispatchEvent(new Event('input'));"
        "return document.getElementById('replay-at').textContent;",
        total - 3,
    )
    assert f"/{total}" in middle
    assert node_state(browser, "first") == "COMPLETED"
    browser.save_screenshot(str(shots / "replay.png"))
    browser.find_element(By.ID, "replay-live").click()
    until(lambda: node_state(browser, "hostile") == "COMPLETED", "live again")


def test_approve_from_the_node_panel(browser: Any, server: Server, shots: Path) -> None:
    from selenium.webdriver.common.by import By

    signed_in_as(browser, server, "adm-key", "admin")  # whatever an earlier test left
    execution_id = start(server, APPROVAL)
    open_execution(browser, server, execution_id)
    until(lambda: node_state(browser, "ask") == "WAITING", "the approval waiting")
    click_node(browser, "ask")
    type_into(browser, "decision-comment", "looks right")
    press(browser, "act-approve")
    until(lambda: status_of(server, execution_id) == "COMPLETED", "the approved run's end")
    until(lambda: node_state(browser, "after") == "COMPLETED", "the page following it")
    detail = httpx.get(f"{server.url}/v1/workflows/{execution_id}", headers=ADMIN).json()
    decision = detail["nodes"]["ask"]["output"]
    # The decider is the signed-in identity: the admin key's name, with its role.
    assert decision["decided_by"] == "alice" and decision["decided_by_role"] == "admin"
    assert decision["approved"] is True and decision["comment"] == "looks right"
    until(lambda: "alice" in browser.find_element(By.ID, "panel-output").text, "the decision")
    browser.save_screenshot(str(shots / "approved.png"))


def test_retry_a_failed_run(browser: Any, server: Server) -> None:
    from selenium.webdriver.common.by import By

    signed_in_as(browser, server, "adm-key", "admin")  # whatever an earlier test left
    execution_id = start(server, FLAKY)
    until(lambda: status_of(server, execution_id) == "FAILED", "the first attempt failing")
    open_execution(browser, server, execution_id)
    click_node(browser, "flaky")
    # The category and the message (read again if the panel is being re-rendered).
    until(lambda: "flaky" in browser.find_element(By.ID, "panel-error").text, "the error")
    press(browser, "act-retry")
    until(lambda: status_of(server, execution_id) == "COMPLETED", "the retried run's end")
    until(
        lambda: browser.find_element(By.ID, "x-status").text == "COMPLETED",
        "the page showing it",
    )


SAGA = {
    "name": "saga-broken-undo",
    "dag": {
        "nodes": [
            {
                "id": "a",
                "handler": "noop",
                "compensate": {"handler": "python", "config": {"function": "sleep"}},
            },
            {
                "id": "b",
                "handler": "noop",
                "dependencies": ["a"],
                "compensate": {
                    "handler": "python",
                    "config": {"function": "fail", "params": {"message": "undo b broke"}},
                },
            },
            {
                "id": "d",
                "handler": "python",
                "dependencies": ["b"],
                "retry": {"max_attempts": 1},
                "config": {"function": "fail", "params": {"message": "d went wrong"}},
            },
        ]
    },
}


def test_a_failed_compensation_is_drawn_as_a_failure(browser: Any, server: Server) -> None:
    # b's compensation failed: b stays COMPLETED in the API, but the page draws it red, as a
    # failure of its own, live and in the replay; a, undone, is compensated.
    from selenium.webdriver.common.by import By

    signed_in_as(browser, server, "adm-key", "admin")
    execution_id = start(server, SAGA)
    until(lambda: status_of(server, execution_id) == "FAILED", "the saga's end")
    open_execution(browser, server, execution_id)
    until(lambda: node_state(browser, "b") == "COMPENSATION_FAILED", "b drawn as failed")
    assert node_state(browser, "a") == "COMPENSATED"
    stroke = browser.execute_script(
        "const r = document.querySelector(\"g[data-node='b'] rect\");"
        "return getComputedStyle(r).stroke;"
    )
    failed = browser.execute_script(
        "const r = document.querySelector(\"g[data-node='d'] rect\");"
        "return getComputedStyle(r).stroke;"
    )
    assert stroke == failed  # the colour of a failure, not of a completed node
    click_node(browser, "b")
    badge = browser.find_element(By.CSS_SELECTOR, "#panel .badge")
    assert badge.text == "COMPENSATION_FAILED"
    browser.execute_script(  # the replay's last step: the journal says the same
        "const r = document.getElementById('replay'); r.value = String(r.max - 1);"
        "r.dispatchEvent(new Event('input'));"
    )
    until(lambda: node_state(browser, "b") == "COMPENSATION_FAILED", "b in the replay")
    browser.find_element(By.ID, "replay-live").click()


def test_filter_the_executions_list(browser: Any, server: Server, shots: Path) -> None:
    from selenium.webdriver.common.by import By

    signed_in_as(browser, server, "adm-key", "admin")  # whatever an earlier test left
    browser.get(f"{server.url}/ui/")
    until(lambda: browser.find_elements(By.CSS_SELECTOR, "#rows tr"), "the list")
    field = browser.find_element(By.ID, "f-workflow")
    field.clear()
    field.send_keys("flaky-once")
    browser.find_element(By.ID, "apply").click()

    def only_flaky() -> bool:
        rows = browser.find_elements(By.CSS_SELECTOR, "#rows tr td:nth-child(2)")
        return bool(rows) and {row.text for row in rows} == {"flaky-once"}

    until(only_flaky, "only flaky-once rows")
    assert "workflow=flaky-once" in browser.current_url
    counts = browser.find_element(By.ID, "counts").text
    assert "1 total" in counts and "COMPLETED 1" in counts
    browser.find_element(By.ID, "clear").click()
    until(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#rows tr")) >= 3, "all rows")
    browser.save_screenshot(str(shots / "list.png"))

    # Executions started together share their first characters: the last ones find one.
    _, wanted = start(server, CHAIN), start(server, CHAIN)
    end = wanted[-8:]
    type_into(browser, "f-id-end", end)
    browser.find_element(By.ID, "apply").click()

    def only_wanted() -> bool:
        rows = browser.find_elements(By.CSS_SELECTOR, "#rows tr")
        return [row.get_attribute("data-id") for row in rows] == [wanted]

    until(only_wanted, f"only the execution ending with {end}", seen=browser)
    assert f"id_suffix={end}" in browser.current_url
    until(lambda: "1 total" in browser.find_element(By.ID, "counts").text, "its count alone")
    browser.refresh()  # kept in the URL: the field and the list come back as they were
    until(
        lambda: browser.find_element(By.ID, "f-id-end").get_attribute("value") == end,
        "the field holding the end of the id",
    )
    until(only_wanted, "the same list after a reload", seen=browser)
    browser.find_element(By.ID, "clear").click()
    until(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#rows tr")) >= 5, "all rows")

    # Leaving a page closes its event stream: ten pages in a row each load at once (a
    # browser holds six connections per server; kept streams made the seventh wait).
    for n in range(10):
        browser.get(f"{server.url}/ui/?page={n}")
        until(
            lambda: browser.execute_script("return document.body.dataset.loaded === 'true'"),
            f"page {n} of a row of pages",
            timeout=5,
        )

    # Live: a new execution appears on the first page without a reload.
    before = len(browser.find_elements(By.CSS_SELECTOR, "#rows tr"))
    start(server, CHAIN)
    until(
        lambda: len(browser.find_elements(By.CSS_SELECTOR, "#rows tr")) == before + 1,
        "the new execution listed live",
    )


SLOW = {
    "name": "slow",
    "dag": {
        "nodes": [
            {
                "id": "nap",
                "handler": "python",
                "config": {"function": "sleep", "params": {"seconds": 0.5}},
            },
            {
                "id": "after",
                "handler": "python",
                "dependencies": ["nap"],
                "config": {"function": "sleep", "params": {"seconds": 30}},
            },
        ]
    },
}


def test_pause_resume_cancel_and_rerun_from_a_node(browser: Any, server: Server) -> None:
    from selenium.webdriver.common.by import By

    signed_in_as(browser, server, "adm-key", "admin")  # whatever an earlier test left
    execution_id = start(server, SLOW)
    open_execution(browser, server, execution_id)
    until(lambda: browser.find_elements(By.ID, "act-pause"), "the pause button")
    press(browser, "act-pause")
    until(lambda: status_of(server, execution_id) == "PAUSED", "paused")
    until(lambda: browser.find_elements(By.ID, "act-resume"), "the resume button")
    press(browser, "act-resume")
    until(lambda: status_of(server, execution_id) != "PAUSED", "resumed")
    until(lambda: node_state(browser, "after") == "RUNNING", "the next node running")
    press(browser, "act-cancel")
    browser.switch_to.alert.accept()  # "Cancel this execution?"
    until(lambda: status_of(server, execution_id) == "CANCELLED", "cancelled")
    until(lambda: browser.find_element(By.ID, "x-status").text == "CANCELLED", "shown")

    # Re-run from a node of a finished run: that node and what follows it run again.
    chain = start(server, CHAIN)
    until(lambda: status_of(server, chain) == "COMPLETED", "the chain done")
    open_execution(browser, server, chain)
    click_node(browser, "second")
    press(browser, "act-rerun")
    until(
        lambda: (
            httpx.get(f"{server.url}/v1/workflows/{chain}", headers=ADMIN).json()["nodes"][
                "second"
            ]["attempt"]
            == 2
        ),
        "the second node's new attempt",
    )
    until(lambda: status_of(server, chain) == "COMPLETED", "the re-run done")


TYPED = {
    "name": "team/typed flow",
    "inputs": {
        "name": {"type": "string", "required": True},
        "count": {"type": "integer", "default": 3},
        "loud": {"type": "boolean", "default": False},
    },
    "dag": {"nodes": [{"id": "input", "handler": "input"}]},
}
BROKEN = """name: broken
dag:
  nodes:
    - id: a
      handler: noop
    - id: b
      handler: noop
      dependencies: [nowhere]
"""


def test_start_from_the_inputs_form_and_validate(browser: Any, server: Server, shots: Path) -> None:
    from selenium.webdriver.common.by import By

    signed_in_as(browser, server, "adm-key", "admin")  # whatever an earlier test left
    httpx.post(f"{server.url}/v1/workflow", json=TYPED, headers=ADMIN).raise_for_status()
    browser.get(f"{server.url}/ui/definitions")
    until(lambda: browser.find_elements(By.LINK_TEXT, "team/typed flow"), "its link")
    browser.find_element(By.LINK_TEXT, "team/typed flow").click()
    until(lambda: browser.find_elements(By.ID, "in-name"), "the inputs form")
    assert browser.find_element(By.ID, "in-count").get_attribute("value") == "3"  # default
    assert browser.find_element(By.ID, "in-name").get_attribute("required") == "true"
    browser.find_element(By.ID, "in-name").send_keys("<b>ada</b>")
    count = browser.find_element(By.ID, "in-count")
    count.clear()
    count.send_keys("5")
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element(By.ID, "in-loud")).select_by_visible_text("true")
    browser.save_screenshot(str(shots / "start-form.png"))
    browser.find_element(By.ID, "start").click()
    until(lambda: "/ui/executions/" in browser.current_url, "the new execution's page")
    execution_id = browser.current_url.rsplit("/", 1)[1]
    detail = httpx.get(f"{server.url}/v1/workflows/{execution_id}", headers=ADMIN).json()
    assert detail["inputs"] == {"name": "<b>ada</b>", "count": 5, "loud": True}

    browser.get(f"{server.url}/ui/definitions")
    until(lambda: browser.find_elements(By.CSS_SELECTOR, "#def-rows tr"), "the definitions")
    browser.execute_script("document.getElementById('validate-text').value = arguments[0];", BROKEN)
    browser.find_element(By.ID, "validate").click()
    issue = until(
        lambda: browser.find_element(By.CSS_SELECTOR, "#validate-result li").text, "the issues"
    )
    assert issue.startswith("line 8, node b, dependencies[0]") and "nowhere" in issue
    browser.save_screenshot(str(shots / "definitions.png"))
    browser.get(f"{server.url}/ui/operations")
    until(lambda: browser.find_elements(By.CSS_SELECTOR, "#compliance tr"), "the controls")
    browser.save_screenshot(str(shots / "operations.png"))


PERSONAL = {
    "name": "personal",
    "dag": {
        "nodes": [
            {
                "id": "who",
                "handler": "noop",
                "data_classification": "pii",
                "config": {"value": {"email": "ada@example.com"}},
            }
        ]
    },
}


def test_csrf_and_viewer_cannot_act(browser: Any, server: Server, shots: Path) -> None:
    from selenium.webdriver.common.by import By

    signed_in_as(browser, server, "adm-key", "admin")  # whatever an earlier test left
    personal = start(server, PERSONAL)
    until(lambda: status_of(server, personal) == "COMPLETED", "the pii run done")
    chain = start(server, CHAIN)
    until(lambda: status_of(server, chain) == "COMPLETED", "the chain run done")
    execution_id = start(server, APPROVAL)
    until(lambda: status_of(server, execution_id) == "WAITING", "the approval waiting")
    approve = f"/v1/workflows/{execution_id}/nodes/ask/approve"
    # Signed in as the admin, without the CSRF token: refused, and nothing happened.
    refused = fetch(browser, "POST", approve, csrf=False)
    assert refused["status"] == 403 and "X-CSRF-Token" in refused["body"]
    assert status_of(server, execution_id) == "WAITING"

    sign_out(browser)
    sign_in(browser, server, "view-key")
    assert "viewer" in browser.find_element(By.ID, "who").text
    open_execution(browser, server, execution_id)
    assert browser.find_elements(By.CSS_SELECTOR, "#x-actions button") == []
    click_node(browser, "ask")
    assert browser.find_elements(By.ID, "act-approve") == []
    browser.save_screenshot(str(shots / "viewer.png"))
    # Asking anyway, with the token: the API refuses the viewer's key.
    for method, path in (("POST", approve), ("DELETE", f"/v1/workflows/{execution_id}")):
        answer = fetch(browser, method, path, csrf=True)
        assert answer["status"] == 403 and "operator" in answer["body"], answer
    assert status_of(server, execution_id) == "WAITING"
    # Masked for the viewer exactly as the API masks it.
    open_execution(browser, server, personal)
    click_node(browser, "who")
    output = browser.find_element(By.ID, "panel-output").text
    assert "masked" in output and "ada@example.com" not in output, output
    # Log lines too are masked for the viewer, as the log API masks them.
    open_execution(browser, server, chain)
    click_node(browser, "talker")
    logs = until(lambda: logs_text(browser), "the viewer's log lines")
    assert "ada@example.com" not in logs and "<script>" in logs, logs
    sign_out(browser)


def test_a_realistic_workflow_and_the_readme_picture(
    browser: Any, server: Server, shots: Path
) -> None:
    """An order fulfilled, its payment retried once: the panel of the payment node shows the
    values its second attempt rendered. The screenshot is the README's picture when
    ``ORCHESTRION_DASHBOARD_PICTURE`` names where to write it."""
    from selenium.webdriver.common.by import By

    sign_in(browser, server, "adm-key")
    execution_id = start(server, ORDER, ORDER_INPUTS)
    until(lambda: status_of(server, execution_id) == "COMPLETED", "the order fulfilled")
    open_execution(browser, server, execution_id)
    click_node(browser, "charge_card")
    until(lambda: "captured, payment" in panel_text(browser, "panel-logs"), "the payment's logs")
    rendered = until(lambda: '"amount": 129.9' in panel_text(browser, "panel-rendered"), "inputs")
    assert rendered
    text = panel_text(browser, "panel-rendered")
    assert text.startswith("attempt 2") and '"customer": "C-2077"' in text
    attempts = browser.find_element(By.ID, "panel").text
    assert "did not answer within 5 s" in attempts  # attempt 1's own error, retried
    # The same, through the Python client against the real server: one item per attempt.
    from orchestrion.client import Client

    with Client(server.url, api_key="view-key") as client:
        kept = client.node_inputs(execution_id, "charge_card")
    assert [item.attempt for item in kept] == [1, 2]
    assert kept[1].inputs["params"] == {
        "order": "SO-1042",
        "amount": 129.9,
        "currency": "EUR",
        "customer": "C-2077",
    }
    browser.execute_script("window.scrollTo(0, 0)")
    picture = shots / "readme.png"
    browser.save_screenshot(str(picture))
    target = os.environ.get("ORCHESTRION_DASHBOARD_PICTURE")
    if target:
        shutil.copyfile(picture, target)


def _sleeper(node: str, after: str | None, seconds: float) -> dict[str, Any]:
    return {
        "id": node,
        "handler": "python",
        "dependencies": [after] if after else [],
        "config": {"function": "sleep", "params": {"seconds": seconds}},
    }


STEPS = {
    "name": "four-steps",
    "dag": {
        "nodes": [
            _sleeper("s1", None, 1),
            _sleeper("s2", "s1", 1),
            _sleeper("s3", "s2", 1),
            _sleeper("s4", "s3", 1),
        ]
    },
}
NESTED = {
    "name": "calls-a-child",
    "dag": {
        "nodes": [
            {"id": "call", "handler": "workflow", "config": {"workflow": "four-steps"}},
            {
                "id": "each",
                "handler": "map",
                "config": {
                    "items": [1, 2, 3, 4, 5, 6],
                    "handler": "python",
                    "concurrency": 1,
                    "config": {"function": "sleep", "params": {"seconds": 0.6}},
                },
            },
            {"id": "after", "handler": "noop", "dependencies": ["call", "each"]},
        ]
    },
}


def as_admin(browser: Any, server: Server) -> None:
    """Signed in with the admin key, whatever an earlier test left."""
    signed_in_as(browser, server, "adm-key", "admin")


def signed_in_as(browser: Any, server: Server, key: str, role: str) -> None:
    """Signed in with ``key`` (of ``role``), whatever an earlier test left."""
    from selenium.webdriver.common.by import By

    browser.get(f"{server.url}/ui/")

    def settled() -> str | None:
        if "/ui/login" in browser.current_url:
            return "out"
        who = browser.find_elements(By.ID, "who")
        text = str(who[0].text) if who else ""
        return text if text and not text.startswith("not connected") else None

    who = until(settled, "the executions page or the sign-in page", timeout=30, seen=browser)
    if role not in who:
        if who != "out":
            sign_out(browser)
        until(lambda: browser.find_elements(By.ID, "api-key"), "the sign-in form", seen=browser)
        browser.find_element(By.ID, "api-key").send_keys(key)
        browser.find_element(By.ID, "sign-in").click()
        until(lambda: role in browser.find_element(By.ID, "who").text, f"the {role} signed in")


def node_sub(browser: Any, node: str) -> str:
    return str(
        browser.execute_script(
            "const t = document.querySelector(`g[data-node='${arguments[0]}'] text.sub`);"
            "return t ? t.textContent : '';",
            node,
        )
    )


def test_a_sub_workflow_is_one_node_with_its_progress(
    browser: Any, server: Server, shots: Path
) -> None:
    """The child's progress is drawn on the node that runs it, live, with a link to the
    child's page; a map node shows its items' progress the same way."""
    from selenium.webdriver.common.by import By

    as_admin(browser, server)
    httpx.post(f"{server.url}/v1/workflow", json=STEPS, headers=ADMIN).raise_for_status()
    execution_id = start(server, NESTED)
    open_execution(browser, server, execution_id)
    seen: set[str] = set()

    def progressed(node: str, pattern: str) -> bool:
        text = node_sub(browser, node)
        if re.fullmatch(pattern, text):
            seen.add(f"{node}:{text}")
        return bool(re.fullmatch(pattern, text))

    # Part way through, live, without a reload: the child between its first and last node.
    until(lambda: progressed("call", r"[12]/4 done · RUNNING"), "the child part way", 20)
    assert node_state(browser, "call") == "WAITING"  # for its child
    until(lambda: progressed("each", r"map · [1-4]/6"), "the map part way", 20)
    assert node_state(browser, "each") == "RUNNING"
    browser.save_screenshot(str(shots / "sub-workflow-running.png"))
    assert browser.find_elements(By.CSS_SELECTOR, "svg.minimap") == []  # it all fits
    until(lambda: progressed("call", r"4/4 done · COMPLETED"), "the child done", 20)
    until(lambda: node_state(browser, "after") == "COMPLETED", "the parent done", 20)
    bar = browser.find_element(By.CSS_SELECTOR, "g[data-node='call'] rect.progress")
    assert bar.get_attribute("width") == browser.find_element(
        By.CSS_SELECTOR, "g[data-node='call'] rect:not(.progress)"
    ).get_attribute("width")  # full
    child = httpx.get(f"{server.url}/v1/workflows/{execution_id}", headers=ADMIN).json()
    child_id = child["nodes"]["call"]["child"]["execution_id"]
    click_node(browser, "call")
    assert "COMPLETED · 4/4 nodes done" in panel_text(browser, "panel-child")
    link = browser.find_element(By.CSS_SELECTOR, "g[data-node='call'] a.open")
    href = browser.execute_script("return arguments[0].getAttribute('href')", link)
    assert href == f"/ui/executions/{child_id}"
    browser.save_screenshot(str(shots / "sub-workflow.png"))
    browser.execute_script("arguments[0].dispatchEvent(new MouseEvent('click'))", link)
    until(lambda: browser.current_url.endswith(f"/ui/executions/{child_id}"), "the child's page")
    until(lambda: "Parent:" in browser.find_element(By.ID, "x-links").text, "its parent link")


def _thousand() -> dict[str, Any]:
    """100 layers of 10 noop nodes, each depending on two of the layer before (the bench's)."""
    nodes: list[dict[str, Any]] = []
    for layer in range(100):
        for col in range(10):
            deps = [f"n{layer - 1}_{col}", f"n{layer - 1}_{(col + 1) % 10}"] if layer else []
            nodes.append({"id": f"n{layer}_{col}", "handler": "noop", "dependencies": deps})
    return {"name": "thousand", "dag": {"nodes": nodes}}


def on_screen(browser: Any, node: str) -> bool:
    """The node's box lies inside the graph's box on the screen."""
    return bool(
        browser.execute_script(
            "const g = document.querySelector(`g[data-node='${arguments[0]}'] rect`);"
            "const a = g.getBoundingClientRect();"
            "const b = document.getElementById('graph').getBoundingClientRect();"
            "return a.left >= b.left && a.right <= b.right && a.top >= b.top"
            " && a.bottom <= b.bottom;",
            node,
        )
    )


def test_a_thousand_nodes_open_readable_with_an_overview(
    browser: Any, server: Server, shots: Path
) -> None:
    """A 1,000-node run opens at a readable size with its roots in view; the minimap shows
    where the view is and moves it; "Fit" shows every node; zoom and drag still work."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    as_admin(browser, server)
    execution_id = start(server, _thousand())
    until(lambda: status_of(server, execution_id) == "COMPLETED", "the 1,000 nodes done", 120)
    open_execution(browser, server, execution_id)
    loaded_ms = int(browser.execute_script("return document.body.dataset.loadedMs"))
    print(f"\n1,000-node execution page loaded in {loaded_ms} ms")
    assert loaded_ms < 10_000  # bench/dashboard.py measures it against its 2 s budget
    assert "1000 nodes" in browser.find_element(By.ID, "graph-info").text
    first = browser.find_element(By.CSS_SELECTOR, "g[data-node='n0_0'] rect")
    assert first.size["width"] >= 100, first.size  # readable: not fitted to a blur
    assert on_screen(browser, "n0_0") and not on_screen(browser, "n99_0")
    dots = browser.find_elements(By.CSS_SELECTOR, "svg.minimap rect.m-completed")
    assert len(dots) == 1000  # every node, in its state's colour
    frame = browser.find_element(By.CSS_SELECTOR, "svg.minimap rect.mini-view")
    before = float(frame.get_attribute("x"))
    browser.save_screenshot(str(shots / "thousand-open.png"))

    # A click near the minimap's right end brings the last layers into view.
    minimap = browser.find_element(By.CSS_SELECTOR, "svg.minimap")
    width = minimap.size["width"]
    ActionChains(browser).move_to_element_with_offset(minimap, width // 2 - 4, 0).click().perform()
    until(lambda: on_screen(browser, "n99_5"), "the last layer in view")
    assert float(frame.get_attribute("x")) > before and not on_screen(browser, "n0_0")
    browser.save_screenshot(str(shots / "thousand-minimap.png"))

    # Drag the graph to pan back a little, zoom in, then fit: every node in view.
    def view_box() -> list[float]:
        text = browser.execute_script(
            "return document.querySelector('svg.dag').getAttribute('viewBox')"
        )
        return [float(part) for part in str(text).split()]

    view = view_box()
    box = browser.find_element(By.CSS_SELECTOR, "svg.dag")
    ActionChains(browser).move_to_element(box).click_and_hold().move_by_offset(
        200, 0
    ).release().perform()
    panned = view_box()
    assert panned[0] < view[0] and panned[2] == view[2]  # dragged right: looks further left
    browser.find_element(By.ID, "zoom-in").click()
    assert view_box()[2] < panned[2]
    browser.find_element(By.ID, "zoom-fit").click()
    for node in ("n0_0", "n0_9", "n99_0", "n99_9", "n50_5"):
        assert on_screen(browser, node), node
    browser.save_screenshot(str(shots / "thousand-fit.png"))


YEARLY = """\
name: yearly-report
triggers:
  - type: scheduled
    name: new_year
    schedule: "0 0 1 1 *"
  - type: scheduled
    name: midsummer
    schedule: "0 12 21 6 *"
dag:
  nodes:
    - id: report
      handler: noop
"""


def schedule_row(browser: Any, schedule: str) -> Any:
    from selenium.webdriver.common.by import By

    found = browser.find_elements(By.CSS_SELECTOR, f"tr[data-schedule='{schedule}']")
    return found[0] if found else None


def schedule_state(server: Server, schedule: str) -> str | None:
    answer = httpx.get(f"{server.url}/v1/schedules/{schedule}", headers=ADMIN)
    return str(answer.json()["state"]) if answer.status_code == 200 else None


def test_schedules_trigger_pause_and_delete_as_the_role_allows(
    browser: Any, server: Server, shots: Path
) -> None:
    """An operator fires a schedule now, pauses, resumes and deletes it from the definitions
    page; a viewer sees the schedules without a button, and the API refuses it the verbs."""
    from selenium.webdriver.common.by import By

    yaml = {**ADMIN, "Content-Type": "application/yaml"}
    stored = httpx.post(f"{server.url}/v1/workflow", content=YEARLY, headers=yaml)
    assert stored.status_code == 201, stored.text
    new_year, midsummer = "yearly-report:new_year", "yearly-report:midsummer"
    signed_in_as(browser, server, "op-key", "operator")
    browser.get(f"{server.url}/ui/definitions")
    until(lambda: schedule_row(browser, new_year), "the schedule's row")

    def press_in(schedule: str, action: str) -> None:
        def attempt() -> bool:
            row = schedule_row(browser, schedule)
            row.find_element(By.CSS_SELECTOR, f"button[data-action='{action}']").click()
            return True

        until(attempt, f"{action} on {schedule}")

    def fired() -> list[Any]:
        listed = httpx.get(
            f"{server.url}/v1/workflows",
            params={"workflow": "yearly-report", "trigger": "schedule"},
            headers=ADMIN,
        )
        return list(listed.json()["items"])

    assert fired() == []  # a yearly schedule: nothing fired on its own
    press_in(new_year, "trigger")
    started = until(fired, "the execution the trigger started")
    assert len(started) == 1
    press_in(new_year, "pause")
    until(lambda: schedule_state(server, new_year) == "paused", "paused")
    until(
        lambda: (
            schedule_row(browser, new_year).find_element(By.CSS_SELECTOR, "td.state").text
            == "paused"
        ),
        "the row saying paused",
    )
    press_in(new_year, "resume")
    until(lambda: schedule_state(server, new_year) == "active", "active again")
    browser.save_screenshot(str(shots / "schedules.png"))
    press_in(new_year, "delete")
    browser.switch_to.alert.accept()  # "Delete the schedule ...?"
    until(lambda: schedule_state(server, new_year) in (None, "deleted"), "deleted")
    until(lambda: schedule_row(browser, new_year) is None, "its row gone")
    assert schedule_row(browser, midsummer) is not None

    # A viewer: the schedules, without a button; asking anyway is refused.
    sign_out(browser)
    signed_in_as(browser, server, "view-key", "viewer")
    browser.get(f"{server.url}/ui/definitions")
    row = until(lambda: schedule_row(browser, midsummer), "the viewer's schedules")
    assert row.find_elements(By.CSS_SELECTOR, "button") == []
    for method, suffix in (("POST", "/trigger"), ("POST", "/pause"), ("DELETE", "")):
        answer = fetch(browser, method, f"/v1/schedules/{midsummer}{suffix}", csrf=True)
        assert answer["status"] == 403 and "operator" in answer["body"], answer
    assert schedule_state(server, midsummer) == "active" and len(fired()) == 1
    sign_out(browser)


def test_dead_letters_shown_retried_and_dropped(
    browser: Any, server: Server, shots: Path, tmp_path: Path
) -> None:
    """Nodes that exhausted their retries are the dead letter queue of an embedded
    deployment: the admin shows one, retries it once the cause is fixed (its execution runs
    again from it to the end), and drops another (recorded as handled); a viewer sees no
    queue and the API refuses it."""
    from selenium.webdriver.common.by import By

    marker = tmp_path / "fixed"
    fixable = {
        "name": "fixable",
        "dag": {
            "nodes": [
                {
                    "id": "fragile",
                    "handler": "python",
                    "config": {
                        "function": "dash_fixable.until_fixed",
                        "params": {"path": str(marker)},
                    },
                },
                {"id": "then", "handler": "noop", "dependencies": ["fragile"]},
            ]
        },
    }
    first, second = start(server, fixable), start(server, fixable)
    for execution_id in (first, second):
        until(lambda e=execution_id: status_of(server, e) == "FAILED", "the node failing")
    as_admin(browser, server)
    browser.get(f"{server.url}/ui/operations")

    def entry_of(execution_id: str) -> Any:
        for row in browser.find_elements(By.CSS_SELECTOR, "#dlq tr[data-entry]"):
            if execution_id in row.text:
                return row
        return None

    def press_in(execution_id: str, action: str) -> None:
        def attempt() -> bool:
            row = entry_of(execution_id)
            row.find_element(By.CSS_SELECTOR, f"button[data-action='{action}']").click()
            return True

        until(attempt, f"{action} on {execution_id}'s dead letter")

    until(lambda: entry_of(first) and entry_of(second), "both dead letters listed")
    assert "fragile" in entry_of(first).text and "marker file is missing" in entry_of(first).text
    press_in(first, "show")
    shown = until(lambda: panel_text(browser, "dlq-shown"), "the entry shown")
    assert first in shown and "marker file is missing" in shown
    browser.save_screenshot(str(shots / "dlq.png"))

    entry = f"/v1/admin/dlq/{entry_of(second).get_attribute('data-entry')}"
    marker.write_text("fixed")
    press_in(first, "retry")
    until(lambda: status_of(server, first) == "COMPLETED", "the retried execution done")
    until(lambda: entry_of(first) is None, "the retried entry gone from the list")
    press_in(second, "drop")
    until(lambda: entry_of(second) is None, "the dropped entry gone from the list")
    assert status_of(server, second) == "FAILED"  # dropped: handled, not re-run
    listed = httpx.get(f"{server.url}/v1/admin/dlq", headers=ADMIN).json()["items"]
    assert not [d for d in listed if d["execution_id"] in (first, second)]

    sign_out(browser)
    signed_in_as(browser, server, "view-key", "viewer")
    browser.get(f"{server.url}/ui/operations")
    until(lambda: browser.find_elements(By.CSS_SELECTOR, "#compliance tr"), "the page")
    assert not browser.find_element(By.ID, "dlq-card").is_displayed()
    for method, path in (("POST", f"{entry}/retry"), ("DELETE", entry)):
        answer = fetch(browser, method, path, csrf=True)
        assert answer["status"] == 403 and "admin" in answer["body"], answer
    sign_out(browser)


SUBMITTED = """# Monthly close <script>window.__pwned = 6</script>
name: monthly-close   # as the finance team wrote it
dag:
  nodes:
    - id: ledger
      handler: noop
      config: {value: "</pre><img src=x onerror=\\"window.__pwned = 7\\">"}
"""


def test_the_definition_page_shows_the_source_as_submitted(
    browser: Any, server: Server, shots: Path
) -> None:
    """The text a version was submitted as, comments and all, beside its canonical form: as
    text, whatever it holds."""
    from selenium.webdriver.common.by import By

    yaml = {**ADMIN, "Content-Type": "application/yaml"}
    stored = httpx.post(f"{server.url}/v1/workflow", content=SUBMITTED, headers=yaml)
    assert stored.status_code == 201, stored.text
    signed_in_as(browser, server, "view-key", "viewer")
    browser.get(f"{server.url}/ui/definitions/monthly-close")
    shown = until(lambda: browser.find_element(By.ID, "d-submitted").text, "the source")
    assert shown == SUBMITTED.rstrip("\n")
    assert browser.find_element(By.ID, "d-submitted-format").text == "yaml"
    canonical = browser.find_element(By.ID, "d-source").text
    assert '"name": "monthly-close"' in canonical and "finance team" not in canonical
    injected = browser.execute_script(
        "return {pwned: window.__pwned, imgs: document.querySelectorAll('img').length}"
    )
    assert injected == {"pwned": None, "imgs": 0}
    browser.execute_script("document.getElementById('d-submitted').scrollIntoView()")
    browser.save_screenshot(str(shots / "definition-source.png"))
    sign_out(browser)


def _live_chains(nodes: int, delay: float) -> dict[str, Any]:
    """A delay (time to open the page), then ``nodes`` noop nodes in chains of 10."""
    wide = nodes // 10
    items: list[dict[str, Any]] = [{"id": "wait", "handler": "delay", "config": {"seconds": delay}}]
    for i in range(nodes):
        deps = ["wait"] if i < wide else [f"n{i - wide}"]
        items.append({"id": f"n{i}", "handler": "noop", "dependencies": deps})
    return {"name": f"live-{nodes}", "dag": {"nodes": items}}


# Every main-thread task over 50 ms from now on (the browser's own measure of a stall).
WATCH_STALLS = """
window.__stalls = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__stalls.push(Math.round(e.duration));
}).observe({type: "longtask"});
"""


def test_a_large_run_followed_live_keeps_the_page_responsive(browser: Any, server: Server) -> None:
    """Thousands of events while the page follows a 500-node run: the page keeps answering
    (events are applied as they come, drawn at most a few times a second), and shows every
    node completed soon after the run ends."""
    as_admin(browser, server)
    execution_id = start(server, _live_chains(500, 3.0))
    open_execution(browser, server, execution_id)
    browser.execute_script(WATCH_STALLS)
    slowest = 0.0
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        t = time.monotonic()
        shown = browser.execute_script(
            "return document.querySelectorAll('g.node[data-state=\"COMPLETED\"]').length"
        )
        slowest = max(slowest, time.monotonic() - t)
        if shown == 501:
            break
        time.sleep(0.1)
    seen = time.time()
    detail = httpx.get(f"{server.url}/v1/workflows/{execution_id}", headers=ADMIN).json()
    assert detail["status"] == "COMPLETED", detail["status"]
    ended = datetime.fromisoformat(detail["finished_at"].replace("Z", "+00:00")).timestamp()
    stalls = browser.execute_script("return window.__stalls")
    print(f"\nlive 500 nodes: shown {seen - ended:.2f} s after the end, slowest look"
          f" {slowest:.2f} s, main-thread stalls over 50 ms: {stalls}")  # fmt: skip
    assert shown == 501, shown
    assert seen - ended < 5, seen - ended
    assert slowest < 2 and max(stalls, default=0) < 1000, (slowest, stalls)
    # The timeline catches up too (from the stream's events, which may come after the state
    # the graph was painted from): an attempt per node, the first 400 drawn.
    until(
        lambda: "of 501 attempts" in browser.find_element("id", "gantt").text,
        "the timeline of every attempt",
        seen=browser,
    )


PROTO = {
    "name": "prototype-names",
    "inputs": {"__proto__": {"type": "string"}, "constructor": {"type": "string"}},
    "dag": {
        "nodes": [
            {"id": "constructor", "handler": "noop", "config": {"value": 2}},
            {"id": "toString", "handler": "noop", "config": {"value": 3}},
            {"id": "b", "handler": "noop", "dependencies": ["constructor", "toString"]},
        ]
    },
}


def test_names_of_object_properties_are_plain_names(browser: Any, server: Server) -> None:
    """Workflow names that are also names of JavaScript object properties ("__proto__",
    "constructor", "toString") are shown and sent like any other; node ids starting with
    "__" are refused when the definition is submitted, naming the node."""
    from selenium.webdriver.common.by import By

    refused = httpx.post(
        f"{server.url}/v1/workflow",
        json={"name": "proto", "dag": {"nodes": [{"id": "__proto__", "handler": "noop"}]}},
        headers=ADMIN,
    )
    assert refused.status_code == 422 and "__proto__" in refused.text, refused.text
    assert "reserved" in refused.text

    as_admin(browser, server)
    httpx.post(f"{server.url}/v1/workflow", json=PROTO, headers=ADMIN).raise_for_status()
    browser.get(f"{server.url}/ui/definitions/prototype-names")
    until(lambda: browser.find_elements(By.ID, "in-constructor"), "the inputs form")
    browser.find_element(By.ID, "in-__proto__").send_keys("first")
    browser.find_element(By.ID, "in-constructor").send_keys("second")
    browser.find_element(By.ID, "start").click()
    until(lambda: "/ui/executions/" in browser.current_url, "the new execution's page")
    execution_id = browser.current_url.rsplit("/", 1)[1]
    detail = httpx.get(f"{server.url}/v1/workflows/{execution_id}", headers=ADMIN).json()
    assert detail["inputs"] == {"__proto__": "first", "constructor": "second"}

    until(lambda: status_of(server, execution_id) == "COMPLETED", "the run done")
    open_execution(browser, server, execution_id)
    click_node(browser, "b")
    shown = until(lambda: panel_text(browser, "panel-inputs"), "b's dependencies' outputs")
    assert '"constructor": 2' in shown and '"toString": 3' in shown, shown
    # Replay: each node's state as of the chosen event, never "[object Object]".
    browser.execute_script(
        "const r = document.getElementById('replay'); r.value = r.max - 1;"
        "r.dispatchEvent(new Event('input'));"
    )
    for node in ("constructor", "toString", "b"):
        assert node_state(browser, node) == "COMPLETED", node


SPOOF = "\u2066 · created 1/1/2026, 9:00:00 AM · trusted \u202e"


def test_bidi_controls_cannot_disguise_the_page(browser: Any, server: Server) -> None:
    """A version or name carrying bidirectional controls is refused at submission; text a
    workflow may still carry (node names, outputs) shows its controls as visible markers,
    and names sit isolated in the header line, which keeps its own facts in their place."""
    from selenium.webdriver.common.by import By

    for field in ("version", "name"):
        flow = {
            "name": "payroll",
            "version": "7",
            "dag": {"nodes": [{"id": "a", "handler": "noop"}]},
        }
        flow[field] = f"7{SPOOF}"
        refused = httpx.post(f"{server.url}/v1/workflow", json=flow, headers=ADMIN)
        assert refused.status_code == 422, refused.text
        assert field in refused.text and "U+2066" in refused.text, refused.text

    as_admin(browser, server)
    flow = {
        "name": "רשימת שכר",  # right-to-left text is a name like any other
        "version": "7",
        "dag": {
            "nodes": [
                {
                    "id": "a",
                    "name": "pay\u202eyap",
                    "handler": "noop",
                    "config": {"value": f"out{SPOOF}"},
                },
            ]
        },
    }
    execution_id = start(server, flow)
    until(lambda: status_of(server, execution_id) == "COMPLETED", "the run done")
    open_execution(browser, server, execution_id)
    until(lambda: browser.find_element(By.ID, "x-trust").text, "the header line")
    isolated = browser.execute_script(
        "return [...document.querySelectorAll('#x-meta bdi')].map((b) => b.textContent)"
    )
    assert isolated == ["רשימת שכר", "7"], isolated
    trust = browser.find_element(By.ID, "x-trust").text
    assert (
        trust
        == httpx.get(f"{server.url}/v1/workflows/{execution_id}", headers=ADMIN).json()["trust"]
    )
    label = browser.execute_script(
        "return document.querySelector(\"g[data-node='a'] text.label\").textContent"
    )
    assert label == "pay[U+202E]yap", label
    click_node(browser, "a")
    output = panel_text(browser, "panel-output")
    assert "[U+2066]" in output and "[U+202E]" in output and "\u202e" not in output, output


def test_the_sign_in_form_never_carries_the_key(browser: Any, server: Server) -> None:
    """Submitted before (or without) its script, the sign-in form posts nothing of the key:
    not in the URL, not in the body, not in the server's log; the page says what to do."""
    from selenium.webdriver.common.by import By

    as_admin(browser, server)
    sign_out(browser)
    secret = "adm-key"
    browser.find_element(By.ID, "api-key").send_keys(secret)
    sent = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const form = document.getElementById('login-form');
        done([form.method, form.getAttribute('action'), [...new FormData(form).keys()]]);
        """
    )
    assert sent == ["post", "/ui/login", []], sent  # a nameless field is never submitted
    # A native submission, as when the page's script has not run: no handler sees it.
    browser.execute_script(
        "HTMLFormElement.prototype.submit.call(document.getElementById('login-form'))"
    )
    until(lambda: "did not run" in browser.find_element(By.ID, "login-error").text, "the notice")
    assert browser.current_url == f"{server.url}/ui/login", browser.current_url
    assert secret not in browser.current_url
    # A client posting a key to the page gets the same page: it is not read, nor echoed.
    posted = httpx.post(f"{server.url}/ui/login", data={"api-key": "view-key"})
    assert posted.status_code == 400 and "view-key" not in posted.text
    assert posted.headers["cache-control"] == "no-store"
    log = server.log.read_text(errors="replace")
    assert secret not in log and "view-key" not in log
    # Signing in with the script works as before.
    browser.find_element(By.ID, "api-key").send_keys(secret)
    browser.find_element(By.ID, "sign-in").click()
    until(lambda: "admin" in browser.find_element(By.ID, "who").text, "the admin signed in")


def test_signing_out_and_in_again_and_again_never_meets_a_limit(
    browser: Any, server: Server
) -> None:
    """A signed-out browser loads a page shell, its scripts and styles and the sign-in page
    each time: none of it is counted against the tight limit of callers without a key (2/s,
    burst 20 here, the default), which is for key guessers."""
    from selenium.webdriver.common.by import By

    as_admin(browser, server)
    sign_out(browser)
    for _ in range(8):  # about 10 requests each, past the tight burst
        browser.get(f"{server.url}/ui/")
        until(lambda: "/ui/login" in browser.current_url, "the way to sign in", seen=browser)
        until(lambda: browser.find_elements(By.ID, "api-key"), "the sign-in form", seen=browser)
    signed_in_as(browser, server, "view-key", "viewer")
    assert "viewer" in browser.find_element(By.ID, "who").text


def test_a_refused_session_check_says_so_and_tries_again(browser: Any, server: Server) -> None:
    """When the page's first call is refused (here a 429: the address spent its allowance
    for callers without a key), the page says it is not connected and asks again, instead
    of staying empty."""
    from selenium.webdriver.common.by import By

    as_admin(browser, server)
    sign_out(browser)
    codes = [httpx.get(f"{server.url}/v1/workflows").status_code for _ in range(40)]
    assert 429 in codes, codes  # the tight bucket of this address is empty
    browser.get(f"{server.url}/ui/")
    said = until(
        lambda: (
            browser.find_element(By.ID, "who").text.startswith("not connected")
            and browser.find_element(By.ID, "who").text
        ),
        "the page to say it is not connected",
        seen=browser,
    )
    assert "rate limit" in said and "trying again" in said, said
    # The bucket refills at 2/s: the next try gets its 401 and the page goes to sign in.
    until(lambda: "/ui/login" in browser.current_url, "the way to sign in", seen=browser)
    until(lambda: browser.find_elements(By.ID, "api-key"), "the sign-in form", seen=browser)
    signed_in_as(browser, server, "adm-key", "admin")


def test_a_refused_event_stream_is_opened_again(browser: Any, server: Server) -> None:
    """The execution page's event stream refused (429: the signed-in key holds every stream
    it may open) is opened again once a slot is free, and the page follows the run to its
    end without a reload; the browser alone would have given up for good."""
    as_admin(browser, server)
    browser.get(f"{server.url}/ui/definitions")  # a page that follows no stream
    execution_id = start(server, STEPS)  # four steps of 1 s
    stream = f"{server.url}/v1/workflows/{execution_id}/events/stream"
    held: list[httpx.Response] = []
    with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=64)) as client:
        try:
            # Every stream the key may open (32 by default).
            while len(held) < 40:
                response = client.send(
                    client.build_request("GET", stream, headers=ADMIN), stream=True
                )
                if response.status_code == 429:
                    response.close()
                    break
                held.append(response)
            assert 0 < len(held) < 40, len(held)
            open_execution(browser, server, execution_id)
            time.sleep(1.5)  # the page's stream is refused meanwhile
            assert node_state(browser, "s4") != "COMPLETED"
        finally:
            for response in held:
                response.close()
    until(lambda: node_state(browser, "s4") == "COMPLETED", "the run followed", timeout=30)


def test_redirects_stay_on_the_origin_whatever_the_host_header(server: Server) -> None:
    for path, target in (("/ui/static", "/ui/static/"), ("/", "/ui/"), ("/ui", "/ui/")):
        # A name the server does not answer to gets no redirect at all (DNS rebinding)...
        foreign = httpx.get(
            f"{server.url}{path}", headers={"Host": "evil.example"}, follow_redirects=False
        )
        assert foreign.status_code == 421, (path, foreign.status_code)
        assert "location" not in foreign.headers
        # ... and one it answers to is not echoed into the redirect either.
        answer = httpx.get(
            f"{server.url}{path}", headers={"Host": "app.localhost"}, follow_redirects=False
        )
        assert answer.status_code in (307, 308), (path, answer.status_code)
        assert answer.headers["location"] == target, (path, answer.headers["location"])
