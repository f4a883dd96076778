"""A real ``orchestrion serve`` anchors its trail: checkpoints in the anchor file at start,
every interval and at shutdown, also sent to syslog (a UDP socket on loopback) and POSTed to
a webhook (an HTTP server on loopback). Erasing the trail in its database while it runs shows
in ``GET /v1/audit/verify``, ``GET /health/compliance`` and ``orchestrion audit verify
--server``."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from audit_helpers import AUDIT_ENV, KEY
from orchestrion.store.audit_anchor import Checkpoint

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "orchestrion.cli.app"]
ADMIN = "anchor-admin-key"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
FLOW = {
    "name": "served-anchor",
    "dag": {"nodes": [{"id": "a", "handler": "noop"}, {"id": "b", "handler": "noop"}]},
}
KEYS = {"k1": KEY}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Webhook(http.server.ThreadingHTTPServer):
    """Collects the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, object]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                outer.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    server = Webhook()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def syslog() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    try:
        yield sock
    finally:
        sock.close()


def drain(sock: socket.socket) -> list[str]:
    lines: list[str] = []
    while True:
        try:
            lines.append(sock.recv(65536).decode())
        except TimeoutError:
            return lines


def checkpoints(path: Path) -> list[Checkpoint]:
    if not path.exists():
        return []
    return [Checkpoint.parse(line) for line in path.read_text().splitlines() if line]


def head_seq(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        row = conn.execute("SELECT seq FROM audit_head").fetchone()
    finally:
        conn.close()
    return 0 if row is None else int(row[0])


def test_a_served_trail_is_anchored_and_erasing_it_shows_everywhere(
    tmp_path: Path, webhook: Webhook, syslog: socket.socket
) -> None:
    db, anchor = tmp_path / "served.db", tmp_path / "anchor.jsonl"
    policy = tmp_path / "governance.yaml"
    policy.write_text(
        "version: 1\naudit:\n  anchor:\n"
        f"    file: {anchor}\n"
        f"    syslog: 127.0.0.1:{syslog.getsockname()[1]}\n"
        f"    webhook: http://127.0.0.1:{webhook.server_address[1]}/anchor\n"
        "    interval_seconds: 0.2\n"
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    env.update(
        {
            **AUDIT_ENV,
            "COLUMNS": "250",
            "ORCHESTRION_API_KEYS": f"{ADMIN}:admin",
            "ORCHESTRION_RATE_LIMIT_PER_SECOND": "0",
            "ORCHESTRION_GOVERNANCE_FILE": str(policy),
        }
    )
    log = (tmp_path / "server.log").open("wb")
    command = [*CLI, "serve", "--host", "127.0.0.1", "--port", str(port), "--db", str(db)]
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            try:
                return httpx.get(f"{url}/health", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, "the server")
        assert [c.seq for c in checkpoints(anchor)][:1] == [0]  # anchored at start

        with httpx.Client(base_url=url, timeout=30, headers=AUTH) as client:
            for _ in range(2):
                started = client.post("/v1/workflow", json=FLOW)
                assert started.status_code == 201, started.text  # created, pending
                execution = started.json()["execution_id"]
                triggered = client.post(f"/v1/workflow/trigger/{execution}", json={})
                assert triggered.status_code == 202, triggered.text
                wait_for(
                    lambda e=execution: (
                        client.get(f"/v1/workflows/{e}").json()["status"].lower() == "completed"
                    ),
                    "the execution",
                )
            # The periodic checkpoint catches up with the head.
            newest = head_seq(db)
            wait_for(lambda: max(c.seq for c in checkpoints(anchor)) >= newest, "a checkpoint")
            good = client.get("/v1/audit/verify").json()
            assert good["ok"] is True, good
            assert good["anchor"]["file"] == str(anchor) and good["anchor"]["checkpoints"] >= 2
            compliant = client.get("/health/compliance").json()
            (control,) = [c for c in compliant["controls"] if c["control"] == "audit"]
            assert control["state"] == "on" and f"anchored in {anchor}" in control["detail"]

            # Erase the trail and its head under the running server.
            conn = sqlite3.connect(db)
            conn.execute("DELETE FROM audit")
            conn.execute("DELETE FROM audit_head")
            conn.commit()
            conn.close()

            body = client.get("/v1/audit/verify").json()
            assert body["ok"] is False
            kinds = [(b["kind"], b["message"]) for b in body["breaks"]]
            assert any(
                kind in ("truncated", "forked") and "older copy of the database" in message
                for kind, message in kinds
            ), kinds
            compliance = client.get("/health/compliance").json()
            (audit,) = [c for c in compliance["controls"] if c["control"] == "audit"]
            assert compliance["status"] == "degraded" and audit["state"] == "degraded", audit
            assert audit["detail"].startswith("audit trail broken at record 1 (truncated)")
            chain = audit["info"]["chain"]
            assert any("older copy of the database" in b["message"] for b in chain["breaks"])
            assert audit["info"]["chain"]["anchor"]["file"] == str(anchor)

        remote = subprocess.run(
            [*CLI, "audit", "verify", "--server", url, "--api-key", ADMIN],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert remote.returncode == 1, remote.stdout + remote.stderr
        assert "audit trail broken" in remote.stderr and "anchor holds" in remote.stderr
    finally:
        before = len(checkpoints(anchor))
        stopping = time.time()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        finally:
            if server.poll() is None:
                server.kill()
            log.close()

    # The last checkpoint is written at shutdown.
    written = checkpoints(anchor)
    assert len(written) > before and written[-1].at >= stopping
    assert all(c.valid(KEYS) for c in written)
    # The same checkpoints went to syslog and to the webhook.
    lines = drain(syslog)
    assert lines and all(line.startswith("<85>orchestrion-audit[") for line in lines)
    sent = [Checkpoint.parse(line) for line in lines]
    assert all(c.valid(KEYS) for c in sent) and sent[-1] == written[-1]
    posted = [Checkpoint.parse(json.dumps(b)) for b in webhook.bodies]
    assert all(c.valid(KEYS) for c in posted) and posted[-1] == written[-1]
    server_log = (tmp_path / "server.log").read_text()
    assert "audit head went back" in server_log
