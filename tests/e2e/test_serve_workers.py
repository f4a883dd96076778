"""``orchestrion serve --workers N`` as a real process tree: one port served by N processes,
stopped together by SIGTERM or Ctrl-C, a killed server process replaced with nothing lost,
and the configurations it cannot serve refused with one clear line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from cluster import Cluster
from workers_server import CLI, Pinned, WorkersServer, children, sse_events

pytestmark = pytest.mark.slow

DELAYED = {
    "name": "nap",
    "dag": {
        "nodes": [
            {"id": "nap", "handler": "delay", "config": {"seconds": 2}},
            {"id": "after", "handler": "noop", "dependencies": ["nap"]},
        ]
    },
}


def _gone(pids: list[int], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(Path(f"/proc/{pid}").exists() for pid in pids):
            return True
        time.sleep(0.05)
    return False


def _until(check, timeout: float = 60):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _final(client: httpx.Client, execution_id: str) -> dict | None:
    body = client.get(f"/v1/workflows/{execution_id}").json()
    return body if body["status"] in ("COMPLETED", "FAILED", "CANCELLED") else None


def test_every_process_answers_on_the_one_port_and_sigterm_stops_them_all(
    tmp_path: Path,
) -> None:
    server = WorkersServer(tmp_path, tmp_path / "w.db", workers=3)
    pids = server.children()
    try:
        assert len(pids) == 3
        pinned = [Pinned.to(server, pid) for pid in pids]  # each one serves requests
        for conn in pinned:
            status, body, _ = conn.call("GET", "/health")
            assert status == 200, body
            conn.close()
    finally:
        code = server.stop(signal.SIGTERM)
    assert code == 0, server.log.read_text()
    assert _gone(pids)
    finished = [r for r in server.lines() if r.get("message", "").startswith("Finished server")]
    assert len(finished) == 3, server.log.read_text()  # each stopped gracefully


def test_ctrl_c_to_the_process_group_stops_every_process_gracefully(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    log = tmp_path / "ctrl-c.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*CLI, "serve", "--port", "0", "--db", str(tmp_path / "c.db"), "--workers", "2"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
            start_new_session=True,  # its own process group, as a terminal's foreground job
        )
    try:
        pids = _until(lambda: len(children(process.pid)) == 2 and children(process.pid))
        _until(lambda: log.read_text().count("listening on") >= 3)
        # A Ctrl-C within a few ms of a process's start can still log uvicorn's lifespan
        # being cancelled (a limit not fixed yet): this test is about a running service.
        time.sleep(0.5)
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does: every process gets it
        assert process.wait(40) == 0, log.read_text()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert _gone(pids)
    assert "Traceback" not in log.read_text(), log.read_text()


def test_a_server_process_killed_by_sigkill_is_replaced_and_its_execution_finishes(
    tmp_path: Path,
) -> None:
    server = WorkersServer(tmp_path, tmp_path / "k.db")
    try:
        victim, survivor = server.children()
        driver = Pinned.to(server, victim)
        execution_id = driver.start(DELAYED)
        os.kill(victim, signal.SIGKILL)  # while its delay node waits
        driver.close()

        # Another process is started in its place; the execution the killed one drove is
        # taken over (its owner is a dead process of this host) and completes.
        replaced = _until(lambda: len(server.children()) == 2 and victim not in server.children())
        assert replaced
        with server.client() as client:
            final = _until(lambda: _final(client, execution_id))
        assert final["status"] == "COMPLETED", final
        died = [r for r in server.lines() if "died" in r.get("message", "")]
        assert died and "killed by SIGKILL" in died[0]["message"], server.log.read_text()
        assert survivor in server.children()
    finally:
        assert server.stop() == 0, server.log.read_text()


def _answers_on_new_connections(server: WorkersServer, count: int = 6) -> None:
    for _ in range(count):
        with server.client() as fresh:
            assert fresh.get("/health").status_code == 200


def test_a_stopped_server_process_is_killed_and_replaced_and_its_execution_finishes(
    tmp_path: Path,
) -> None:
    # Alive but answering nothing (SIGSTOP here; a blocked event loop looks the same): the
    # parent hears no heartbeat from it for longer than the timeout.
    server = WorkersServer(tmp_path, tmp_path / "h.db", options=("--worker-timeout", "3"))
    try:
        victim, survivor = server.children()
        driver = Pinned.to(server, victim)
        execution_id = driver.start(DELAYED)
        os.kill(victim, signal.SIGSTOP)  # while its delay node waits
        driver.close()

        with server.client() as client:
            # The others answer every new connection meanwhile.
            _answers_on_new_connections(server)
            replaced = _until(
                lambda: len(server.children()) == 2 and victim not in server.children(), 30
            )
            assert replaced and survivor in server.children()
            assert not Path(f"/proc/{victim}").exists()  # killed, not left stopped
            final = _until(lambda: _final(client, execution_id))
            assert final["status"] == "COMPLETED", final
            _answers_on_new_connections(server)
        died = [r for r in server.lines() if "died" in r.get("message", "")]
        assert died, server.log.read_text()
        assert "no heartbeat for more than 3 s: killed by SIGKILL" in died[0]["message"]
    finally:
        assert server.stop() == 0, server.log.read_text()


STALLS = """\
import os
import time


async def stall(marker: str) -> str:
    if not os.path.exists(marker):  # the first call only: the process that runs it hangs
        open(marker, "w").close()
        time.sleep(120)  # a blocking call in an async def: the event loop stops with it
    return "went on"
"""


def test_a_service_stopped_whole_and_resumed_keeps_its_server_processes(tmp_path: Path) -> None:
    # Ctrl-Z and fg, a paused container: every process stops, for longer than the timeout.
    server = WorkersServer(tmp_path, tmp_path / "z.db", options=("--worker-timeout", "3"))
    try:
        pids = server.children()
        for pid in [*pids, server.process.pid]:
            os.kill(pid, signal.SIGSTOP)
        time.sleep(5)
        # The parent resumes first and looks at the heartbeats before its children beat.
        os.kill(server.process.pid, signal.SIGCONT)
        time.sleep(1.5)
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
        time.sleep(4)  # past the timeout: time for a process that never beat to be killed
        assert server.children() == pids, server.log.read_text()
        assert not [r for r in server.lines() if "died" in r.get("message", "")]
        with server.client() as client:
            assert client.get("/health").status_code == 200
    finally:
        assert server.stop() == 0, server.log.read_text()


def test_a_server_process_whose_event_loop_is_blocked_is_replaced(tmp_path: Path) -> None:
    # A user's async function that blocks the event loop: the process is alive, serves
    # nothing and beats no more.
    (tmp_path / "stalls.py").write_text(STALLS)
    (tmp_path / "governance.yaml").write_text("version: 1\npython:\n  allowed_modules: [stalls]\n")
    env = {
        "ORCHESTRION_API_WORKER_TIMEOUT": "3",
        "ORCHESTRION_GOVERNANCE_FILE": str(tmp_path / "governance.yaml"),
        "PYTHONPATH": str(tmp_path),
    }
    flow = {
        "name": "stalls",
        "dag": {
            "nodes": [
                {"id": "first", "handler": "delay", "config": {"seconds": 0.5}},
                {
                    "id": "stall",
                    "handler": "python",
                    "dependencies": ["first"],
                    "config": {
                        "function": "stalls:stall",
                        "params": {"marker": str(tmp_path / "stalled")},
                    },
                },
            ]
        },
    }
    server = WorkersServer(tmp_path, tmp_path / "b.db", env=env)
    try:
        victim, survivor = server.children()
        driver = Pinned.to(server, victim)
        status, body, _ = driver.call("POST", "/v1/workflow", flow)
        assert status == 201, body
        execution_id = body["execution_id"]
        status, body, _ = driver.call("POST", f"/v1/workflow/trigger/{execution_id}", {})
        assert status == 202, body
        driver.close()
        _until(lambda: (tmp_path / "stalled").exists(), 30)
        with server.client() as client:
            _answers_on_new_connections(server)
            _until(lambda: victim not in server.children() and len(server.children()) == 2, 30)
            final = _until(lambda: _final(client, execution_id))
        assert final["status"] == "COMPLETED", final
        died = [r for r in server.lines() if "died" in r.get("message", "")]
        assert died and "no heartbeat for more than 3 s" in died[0]["message"], died
        assert survivor in server.children()
    finally:
        assert server.stop() == 0, server.log.read_text()


def test_a_server_process_that_cannot_start_stops_the_service_with_its_reason(
    tmp_path: Path,
) -> None:
    policy = tmp_path / "governance.yaml"
    policy.write_text("version: 1\npython:\n  allowed_modules: 12\n")
    server = WorkersServer(
        tmp_path, tmp_path / "p.db", env={"ORCHESTRION_GOVERNANCE_FILE": str(policy)}, wait=False
    )
    code = server.process.wait(60)
    text = server.log.read_text()
    assert code == 2, text  # as `orchestrion serve` alone says of an invalid policy
    assert "allowed_modules" in text and "exited before it listened" in text, text
    assert _gone(children(server.process.pid))


def _serve(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    return subprocess.run(
        [*CLI, "serve", "--port", "0", *args],
        cwd=tmp_path,
        env={**full, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_in_memory_store_is_refused_with_more_than_one_process(tmp_path: Path) -> None:
    shown = _serve(tmp_path, "--workers", "2", ORCHESTRION_DATABASE_URL="memory://")
    assert shown.returncode == 2, shown.stderr
    assert "memory:// lives inside one process" in shown.stderr, shown.stderr
    assert "Traceback" not in shown.stderr
    by_setting = _serve(tmp_path, ORCHESTRION_DATABASE_URL="memory://", ORCHESTRION_API_WORKERS="3")
    assert by_setting.returncode == 2 and "--workers 3" in by_setting.stderr, by_setting.stderr
    zero = _serve(tmp_path, "--workers", "0")
    assert zero.returncode == 2 and "--workers" in zero.stderr, zero.stderr


def test_a_worker_timeout_shorter_than_two_heartbeats_is_refused(tmp_path: Path) -> None:
    # A process beats once a second: waiting less would kill healthy processes at random.
    db = str(tmp_path / "t.db")
    shown = _serve(tmp_path, "--workers", "2", "--db", db, "--worker-timeout", "0.5")
    assert shown.returncode == 2, shown.stdout + shown.stderr
    assert "--worker-timeout 0.5" in shown.stderr and "at least 2 seconds" in shown.stderr
    assert "Traceback" not in shown.stderr
    by_setting = _serve(
        tmp_path, "--workers", "2", "--db", db, ORCHESTRION_API_WORKER_TIMEOUT="1.5"
    )
    assert by_setting.returncode == 2, by_setting.stdout + by_setting.stderr
    assert "ORCHESTRION_API_WORKER_TIMEOUT" in by_setting.stderr, by_setting.stderr


def test_a_temporary_folder_without_room_for_the_metrics_is_one_line_and_exit_3(
    tmp_path: Path,
) -> None:
    # A nearly full /tmp: written into, the metrics files would kill their process (SIGBUS).
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs a mount namespace (unshare -m, as root)")
    small = tmp_path / "small"
    small.mkdir()
    script = (
        f"mount -t tmpfs -o size=12k tmpfs {small}"
        f' && head -c 4096 /dev/zero > {small}/filler && exec "$@"'
    )
    serve = [*CLI, "serve", "--port", "0", "--workers", "2", "--db", str(tmp_path / "s.db")]
    shown = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *serve],
        cwd=tmp_path,
        env={**os.environ, "TMPDIR": str(small)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    text = shown.stdout + shown.stderr
    assert shown.returncode == 3, text
    assert "no room for the shared metrics" in text and "SIGBUS" not in text, text


def test_a_taken_port_is_one_line_and_exit_3(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        shown = subprocess.run(
            [*CLI, "serve", "--port", str(port), "--workers", "2", "--db", str(tmp_path / "t.db")],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert shown.returncode == 3, shown.stdout + shown.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in shown.stdout + shown.stderr
    assert "Traceback" not in shown.stdout + shown.stderr


def test_one_worker_is_the_one_process_server(tmp_path: Path) -> None:
    server = WorkersServer(tmp_path, tmp_path / "one.db", workers=1, wait=False)
    try:
        _until(lambda: "listening on" in server.log.read_text())
        assert children(server.process.pid) == []  # no supervisor: it serves itself
        port = next(r["port"] for r in server.lines() if "listening" in r.get("message", ""))
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 200
    finally:
        assert server.stop() == 0, server.log.read_text()


def test_in_scale_out_mode_each_process_is_an_api_replica(
    postgres_url: str, redis_server: str, redis_prefix: str, tmp_path: Path
) -> None:
    # Scale-out API processes are independent replicas already (the orchestrators drive,
    # commits are announced on Redis to every one): --workers runs N of them on one port.
    cluster = Cluster.for_test(postgres_url, redis_server, redis_prefix, tmp_path / "logs")
    cluster.start("orchestrator-0", "orchestrator")
    cluster.start("worker-0", "worker")
    env = {k: v for k, v in cluster.env.items() if k.startswith("ORCHESTRION_")}
    env["ORCHESTRION_LOG_LEVEL"] = "INFO"
    env["ORCHESTRION_SSE_POLL"] = "60"  # the stream below learns of commits from Redis
    server = WorkersServer(tmp_path, postgres_url, env=env)
    try:
        first, second = server.children()
        a, b = Pinned.to(server, first), Pinned.to(server, second)
        status, body, _ = a.call("POST", "/v1/workflow", {**DELAYED, "name": "replicas"})
        assert status == 201, body
        execution_id = body["execution_id"]
        stream = b.stream(f"/v1/workflows/{execution_id}/events/stream")
        status, body, _ = a.call("POST", f"/v1/workflow/trigger/{execution_id}", {})
        assert status == 202, body
        events = sse_events(stream, "execution.completed", timeout=40)
        assert events[-1]["event"] == "execution.completed", events
        b.close()
        b = Pinned.to(server, second)
        status, body, _ = b.call("GET", f"/v1/workflows/{execution_id}")
        assert body["status"] == "COMPLETED", body
        a.close()
        b.close()
    finally:
        assert server.stop() == 0, server.log.read_text()
        cluster.stop()
