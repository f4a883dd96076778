"""``/docs`` in a real headless Chromium against a real ``orchestrion serve``: Swagger UI draws
the API from the package's own files, under its strict Content-Security-Policy, with nothing
refused by that policy and nothing loaded from anywhere else (the policy would refuse it)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_api_server import Server
from test_dashboard_browser import browser

pytestmark = pytest.mark.slow
__all__ = ["browser"]  # the module's Chromium (it skips without one)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("docs")
    running = Server(folder, folder / "docs.db", {"ORCHESTRION_API_KEYS": "adm-key:admin"})
    try:
        yield running
    finally:
        running.stop()


def _until(driver: Any, script: str, timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := driver.execute_script(script)):
        assert time.monotonic() < deadline, f"not in {timeout}s: {script}"
        time.sleep(0.1)
    return value


def test_swagger_ui_runs_from_the_package_under_its_csp(server: Server, browser: Any) -> None:
    browser.get_log("browser")  # what earlier pages logged
    browser.get(f"{server.url}/docs")
    drawn = _until(browser, "return document.querySelectorAll('.opblock').length")
    assert drawn > 50
    title = browser.execute_script("return document.querySelector('.title').textContent")
    assert title.startswith("Orchestrion")
    # Open an operation and try it out: its answer is drawn too.
    browser.execute_script(
        "document.querySelector('#operations-health-health_health_get .opblock-summary-control')"
        ".click()"
    )
    _until(browser, "return document.querySelector('.try-out__btn')").click()
    _until(browser, "return document.querySelector('.execute')").click()
    status = _until(
        browser, "return document.querySelector('.live-responses-table tbody .response-col_status')"
    )
    assert status.text.strip() in ("200", "503"), status.text
    sources = browser.execute_script(
        "return [...document.scripts, ...document.querySelectorAll('link')]"
        ".map(e => e.src || e.href)"
    )
    assert sources and all(src.startswith(f"{server.url}/docs/static/") for src in sources)
    refused = [
        entry["message"]
        for entry in browser.get_log("browser")
        if "Content Security Policy" in entry["message"] or entry["level"] == "SEVERE"
    ]
    assert refused == []


def test_docs_page_names_no_other_origin(server: Server, tmp_path: Path) -> None:
    import httpx

    page = httpx.get(f"{server.url}/docs")
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert httpx.get(f"{server.url}/redoc").status_code == 404
