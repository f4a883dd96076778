"""The dashboard in scale-out mode: ``orchestrion serve`` in front of a real orchestrator and
worker on PostgreSQL and Redis serves the pages, signs a browser in, and gives the reads the
pages make (counts over time, the live stream of every execution) from the shared store and
the other processes' commits; and, in a real headless Chromium, the operations page draws the
cluster (orchestrators, workers, queues, circuit breakers) from what the processes publish.
What a browser does with the rest is tested in test_dashboard_browser.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cluster import HERE, Cluster
from test_api_server import free_port
from test_dashboard_browser import browser, shots, sign_in, until  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow

KEYS = "ops-key:operator:olga"
FLOW = {
    "name": "scaled",
    "dag": {
        "nodes": [
            {"id": "a", "handler": "python", "config": {"function": "sleep",
                                                          "params": {"seconds": 0.1}}},
            {"id": "b", "handler": "noop", "dependencies": ["a"]},
        ]
    },
}  # fmt: skip


def _wait_healthy(url: str, cluster: Cluster) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ui/", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"serve did not answer:\n{cluster.log_tail()}")


def _start(client: httpx.Client, csrf: str) -> str:
    headers = {"X-CSRF-Token": csrf}
    submitted = client.post("/v1/workflow", json=FLOW, headers=headers)
    assert submitted.status_code == 201, submitted.text
    execution_id = str(submitted.json()["execution_id"])
    started = client.post(f"/v1/workflow/trigger/{execution_id}", headers=headers)
    assert started.status_code == 202, started.text
    return execution_id


def test_the_dashboard_reads_a_cluster(
    postgres_url: str, redis_server: str, redis_prefix: str, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cluster = Cluster.for_test(
        postgres_url,
        redis_server,
        redis_prefix,
        tmp_path / "logs",
        ORCHESTRION_API_KEYS=KEYS,
        ORCHESTRION_RATE_LIMIT_PER_SECOND="0",
        PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    )
    try:
        cluster.start("orchestrator-0", "orchestrator")
        cluster.start("worker-0", "worker")
        cluster.start("api", "serve", "--host", "127.0.0.1", "--port", str(port))
        _wait_healthy(url, cluster)
        page = httpx.get(f"{url}/ui/executions/x")
        assert (
            page.status_code == 200
            and "script-src 'self'" in page.headers["content-security-policy"]
        )
        with httpx.Client(base_url=url, timeout=30) as client:
            signed = client.post("/v1/session", headers={"Authorization": "Bearer ops-key"})
            assert signed.status_code == 201, signed.text
            csrf = signed.json()["csrf_token"]
            assert client.cookies.get("orchestrion_session")
            refused = client.post("/v1/workflow", json=FLOW)
            assert refused.status_code == 403, refused.text

            first = _start(client, csrf)
            deadline = time.monotonic() + 60
            while client.get(f"/v1/workflows/{first}").json()["status"] != "COMPLETED":
                assert time.monotonic() < deadline, cluster.log_tail()
                time.sleep(0.1)
            counts = client.get("/v1/stats/executions", params={"buckets": 4}).json()
            assert counts["by_status"] == {"COMPLETED": 1}
            assert counts["series"]["buckets"][-1]["by_status"] == {"COMPLETED": 1}

            # The stream the executions page follows sees what the orchestrator commits.
            seen: list[dict[str, Any]] = []
            with client.stream("GET", "/v1/events/stream?tail=true") as stream:
                second = _start(client, csrf)
                for line in stream.iter_lines():
                    if line.startswith("data: "):
                        event = json.loads(line[6:])
                        seen.append(event)
                        if event["execution_id"] == second and event["type"] in (
                            "execution.completed",
                            "execution.failed",
                        ):
                            break
                    assert time.monotonic() < deadline + 60, cluster.log_tail()
            assert seen[-1]["type"] == "execution.completed", seen[-1]
            assert {e["execution_id"] for e in seen} == {second}  # from now on: no history
            assert client.delete("/v1/session", headers={"X-CSRF-Token": csrf}).status_code == 200
    finally:
        codes = cluster.stop()
    assert all(code == 0 for code in codes.values()), (codes, cluster.log_tail())


async def _fail_a_call(redis_url: str, prefix: str) -> None:
    """What a worker's breaker records when an http call to a host fails (threshold 1)."""
    from redis.asyncio import Redis

    from orchestrion.cluster.circuits import CircuitBreakers

    redis = Redis.from_url(redis_url)
    try:
        breakers = CircuitBreakers(redis, prefix, threshold=1, open_seconds=600)
        await breakers.before("http", "payments.example")
        await breakers.after("http", "payments.example", ok=False)
    finally:
        await redis.aclose()


def test_the_operations_page_shows_the_cluster(
    postgres_url: str,
    redis_server: str,
    redis_prefix: str,
    tmp_path: Path,
    browser: Any,  # noqa: F811 (the fixture imported above)
    shots: Path,  # noqa: F811
) -> None:
    """Signed in to a real cluster (an orchestrator, a worker, the API), the operations page
    draws the orchestrators, the workers, the queues and the circuit breakers from what the
    processes publish in Redis; a circuit a failing handler opened is listed as open."""
    from selenium.webdriver.common.by import By

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cluster = Cluster.for_test(
        postgres_url,
        redis_server,
        redis_prefix,
        tmp_path / "logs",
        ORCHESTRION_API_KEYS="adm-key:admin:alice",
        ORCHESTRION_RATE_LIMIT_PER_SECOND="0",
        PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    )
    admin = {"Authorization": "Bearer adm-key"}
    try:
        cluster.start("orchestrator-0", "orchestrator")
        cluster.start("worker-0", "worker")
        cluster.start("api", "serve", "--host", "127.0.0.1", "--port", str(port))
        _wait_healthy(url, cluster)
        with httpx.Client(base_url=url, headers=admin, timeout=30) as client:
            _start(client, "")  # a task stream in the queues
        asyncio.run(_fail_a_call(redis_server, redis_prefix))

        def health() -> dict[str, Any]:
            answer = httpx.get(f"{url}/v1/health", headers=admin, timeout=10).json()
            return dict(answer.get("checks") or answer.get("detail", {}).get("checks") or {})

        def ready() -> bool:
            checks = health()
            circuits = checks.get("circuits", {}).get("info", {}).get("circuits", [])
            live = [
                checks[name].get("info", {}).get("live") for name in ("workers", "orchestrators")
            ]
            return bool(circuits) and all(live)

        until(ready, "the processes' heartbeats and the open circuit", timeout=60)

        sign_in(browser, _Url(url), "adm-key")
        browser.get(f"{url}/ui/operations")

        def headings() -> set[str]:
            return {h.text for h in browser.find_elements(By.CSS_SELECTOR, "#cluster h4")}

        wanted = {
            "workers: workers",
            "orchestrators: orchestrators",
            "queues: streams",
            "circuits: circuits",
        }
        until(lambda: wanted <= headings(), f"the cluster tables (saw {headings()})", 30)
        tables = {
            h.text: h.find_element(By.XPATH, "following-sibling::table[1]").text
            for h in browser.find_elements(By.CSS_SELECTOR, "#cluster h4")
        }
        checks = health()
        for name, key in (("workers", "id"), ("orchestrators", "owner")):
            table = f"{name}: {name}"
            ids = [str(item[key]) for item in checks[name]["info"][name]]
            assert ids and all(i in tables[table] for i in ids), (ids, tables[table])
        circuit = tables["circuits: circuits"]
        assert "payments.example" in circuit and "open" in circuit, circuit
        streams = list(checks["queues"]["info"]["streams"])
        assert streams and all(stream in tables["queues: streams"] for stream in streams)
        browser.execute_script("document.getElementById('cluster').scrollIntoView()")
        browser.save_screenshot(str(shots / "operations-cluster.png"))
    finally:
        codes = cluster.stop()
    assert all(code == 0 for code in codes.values()), (codes, cluster.log_tail())


class _Url:
    """What ``sign_in`` needs of a server: its URL."""

    def __init__(self, url: str) -> None:
        self.url = url
