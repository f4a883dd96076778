"""Rate limits and the audit trail of ``orchestrion serve`` as real uvicorn processes.

An unauthenticated flood against a server with an audit trail leaves a bounded summary and no
record naming a client-chosen actor; two API replicas on one Redis and PostgreSQL share one
bucket per key and per address; and one client starting 2,000 executions under the default
limits sees no failed start.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from audit_helpers import AUDIT_ENV
from orchestrion.client.aio import AsyncClient
from orchestrion.client.errors import ApiError

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "orchestrion.cli.app"]
ADMIN, OPERATOR = "e2e-admin-key", "e2e-operator-key"
KEYS = f"{ADMIN}:admin,{OPERATOR}:operator"
FLOW = {"name": "limited", "dag": {"nodes": [{"id": "a", "handler": "noop"}]}}


def key_id(key: str) -> str:
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:8]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().endswith("_PROXY") and not k.startswith("ORCHESTRION_")
    }
    env.update({"ORCHESTRION_API_KEYS": KEYS, "ORCHESTRION_LOG_LEVEL": "WARNING", **extra})
    return env


class Server:
    """``orchestrion serve`` on a free loopback port, until ``stop`` (SIGTERM)."""

    def __init__(self, folder: Path, env: dict[str, str], *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / f"server-{self.port}.log"
        command = [*CLI, "serve", "--host", "127.0.0.1", "--port", str(self.port), *args]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=folder
            )
        deadline = time.monotonic() + 30
        while True:
            assert self.process.poll() is None, self.log.read_text()
            try:
                # Answering is enough: an API replica with no workers yet reports 503.
                if httpx.get(f"{self.url}/health", timeout=1).status_code in (200, 503):
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"server not healthy:\n{self.log.read_text()}"
            time.sleep(0.05)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(5)


def exported(db: Path, folder: Path) -> list[dict]:
    out = folder / "trail.jsonl"
    done = subprocess.run(
        [*CLI, "audit", "export", "--db", str(db), "--output", str(out)],
        capture_output=True,
        text=True,
        env=environment(**AUDIT_ENV),
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def flood_headers(i: int) -> dict[str, str]:
    """Every shape of unauthenticated request, with attacker-chosen strings everywhere."""
    chosen = {"X-Client-ID": f"evil-client-{i}", "User-Agent": f"evil-agent-{i}"}
    match i % 5:
        case 0:
            return {"Authorization": f"Bearer evil-token-{i}", **chosen}
        case 1:
            return chosen
        case 2:
            return {"Authorization": "Bearer wrong", "X-Forwarded-For": f"198.51.100.{i % 250}"}
        case 3:
            return {"Authorization": f"Basic evil-{i}", **chosen}
        case _:
            return {}


def test_an_unauthenticated_flood_adds_a_bounded_summary_and_no_chosen_actor(
    tmp_path: Path,
) -> None:
    db = tmp_path / "flood.db"
    server = Server(tmp_path, environment(**AUDIT_ENV), "--db", str(db))
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            statuses: dict[int, int] = {}
            began = time.monotonic()
            for i in range(500):
                path = "/v1/workflow" if i % 2 else f"/v1/workflow/evil-path-{i}"
                status = client.post(path, json=FLOW, headers=flood_headers(i)).status_code
                statuses[status] = statuses.get(status, 0) + 1
            # The default address bucket: a burst of 20, then 2 a second.
            allowance = 20 + 2 * (time.monotonic() - began) + 1
            assert set(statuses) == {401, 429} and statuses[401] <= allowance, statuses
            # The flood spent the address's bucket, not the key's.
            ok = client.post(
                "/v1/workflow", json=FLOW, headers={"Authorization": f"Bearer {OPERATOR}"}
            )
            assert ok.status_code == 201, ok.text
    finally:
        assert server.stop() == 0, server.log.read_text()  # the last window is flushed
    records = exported(db, tmp_path)
    text = json.dumps(records)
    assert "evil" not in text
    api = [r for r in records if r["action"].startswith("api.")]
    refused = [r for r in api if r["action"] == "api.refused"]
    assert [r["actor"] for r in api if r not in refused] == [key_id(OPERATOR)]
    assert 1 <= len(refused) <= 2  # one per 60 s window
    assert {(r["actor"], r["outcome"]) for r in refused} == {("unauthenticated", "refused")}
    assert sum(r["details"]["requests"] for r in refused) == 500
    assert {a["remote"] for r in refused for a in r["details"]["addresses"]} == {"127.0.0.1"}
    verified = subprocess.run(
        [*CLI, "audit", "verify", "--db", str(db)],
        capture_output=True,
        text=True,
        env=environment(**AUDIT_ENV),
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_two_api_replicas_share_one_bucket(
    tmp_path: Path, postgres_url: str, redis_server: str, redis_prefix: str
) -> None:
    env = environment(
        ORCHESTRION_DATABASE_URL=postgres_url,
        ORCHESTRION_REDIS_URL=redis_server,
        ORCHESTRION_REDIS_PREFIX=redis_prefix,
        ORCHESTRION_RATE_LIMIT_PER_SECOND="0.01",  # no refill within the test
        ORCHESTRION_RATE_LIMIT_BURST="6",
        ORCHESTRION_RATE_LIMIT_UNAUTHENTICATED_PER_SECOND="0.01",
        ORCHESTRION_RATE_LIMIT_UNAUTHENTICATED_BURST="4",
    )
    migrated = subprocess.run([*CLI, "migrate"], capture_output=True, text=True, env=env)
    assert migrated.returncode == 0, migrated.stderr
    one = Server(tmp_path, env)
    two = Server(tmp_path, env)
    try:
        key = {"Authorization": f"Bearer {OPERATOR}"}

        def codes(server: Server, n: int, headers: dict[str, str]) -> list[int]:
            with httpx.Client(base_url=server.url, timeout=10) as client:
                return [client.get("/v1/workflows", headers=headers).status_code for _ in range(n)]

        assert codes(one, 3, key) == [200] * 3
        assert codes(two, 4, key) == [200, 200, 200, 429]
        assert codes(one, 1, key) == [429]
        other = {"Authorization": f"Bearer {ADMIN}"}  # another key: its own bucket
        assert codes(two, 2, other) == [200, 200]
        assert codes(one, 2, {"Authorization": "Bearer a"}) == [401, 401]
        assert codes(two, 3, {"X-Client-ID": "b"}) == [401, 401, 429]
    finally:
        assert one.stop() == 0, one.log.read_text()
        assert two.stop() == 0, two.log.read_text()


def _requests_with_status(metrics: str, status: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if (
                sample.name == "orchestrion_http_requests_total"
                and sample.labels.get("status") == status
            ):
                total += sample.value
    return total


@pytest.mark.timeout(180)
def test_a_client_starts_2000_executions_under_the_default_limits(tmp_path: Path) -> None:
    starts, concurrency = 2000, 8
    server = Server(tmp_path, environment(), "--db", str(tmp_path / "many.db"))
    try:

        async def go() -> tuple[int, list[str], float]:
            async with AsyncClient(server.url, api_key=OPERATOR, timeout=60) as client:
                await client.submit(FLOW)  # the definition the starts refer to
                gate = asyncio.Semaphore(concurrency)
                failures: list[str] = []

                async def start(i: int) -> None:
                    async with gate:
                        try:
                            await client.start_definition("limited", input_params={"i": i})
                        except ApiError as exc:
                            failures.append(f"{exc.status}: {exc}")

                began = time.monotonic()
                await asyncio.gather(*(start(i) for i in range(starts)))
                return starts - len(failures), failures, time.monotonic() - began

        started, failures, seconds = asyncio.run(go())
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
        refused = _requests_with_status(metrics, "429")
        print(
            f"\n{started} starts in {seconds:.1f} s ({started / seconds:.0f}/s), {refused:.0f} 429s"
        )
        assert failures == [] and started == starts
    finally:
        assert server.stop() == 0, server.log.read_text()
