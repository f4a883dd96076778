"""The client and the CLI's ``--server`` mode against a real ``orchestrion serve`` process.

One uvicorn subprocess on a loopback port and a SQLite file serves the whole module; the sync
``Client`` drives it end to end (every method), and the ``orchestrion`` command is run with
``--server`` as a user would.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from orchestrion.client import (
    ApiConnectionError,
    Client,
    Conflict,
    Forbidden,
    InvalidDefinition,
    InvalidRequest,
    NotFound,
    Unauthorized,
)
from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.errors import DefinitionError, ExecutionNotFound, InvalidTransition

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "orchestrion.cli.app"]

GREET = """\
name: greet
inputs:
  name: {type: string, default: world}
dag:
  nodes:
    - {id: input, handler: input}
    - id: hello
      handler: noop
      dependencies: [input]
      config: {value: "hello {{ input.output.name }}"}
    - {id: output, handler: output, dependencies: [hello]}
"""
SLOW = """\
name: slow
dag:
  nodes:
    - {id: first, handler: noop, config: {value: 1, sleep: 0.2}}
    - {id: second, handler: noop, dependencies: [first], config: {sleep: 30}}
"""
FAILING = """\
name: failing
dag:
  nodes:
    - {id: a, handler: noop, config: {value: 1}}
    - id: b
      handler: python
      dependencies: [a]
      config: {function: "fixme:step", params: {path: "FLAG"}}
"""
BAD = "name: bad\ndag:\n  nodes:\n    - {id: a, handler: noop, retries: 3}\n"
FIXME = (
    "import os\n"
    "def step(path):\n"
    "    if not os.path.exists(path):\n"
    "        from orchestrion.errors import PermanentNodeError\n"
    "        raise PermanentNodeError('not fixed yet')\n"
    "    return 'fixed'\n"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    for name in ("ORCHESTRION_SERVER_URL", "ORCHESTRION_API_KEY", "ORCHESTRION_API_KEYS"):
        env.pop(name, None)
    env["COLUMNS"] = "200"
    env.update(extra or {})
    return env


class Server:
    """``orchestrion serve`` in a subprocess, on a free loopback port, until ``stop``."""

    def __init__(self, folder: Path, env: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / f"server-{self.port}.log"
        command = [
            *CLI,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--db",
            str(folder / "server.db"),
        ]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=_env(env), cwd=folder
            )
        self._wait_healthy()

    def _wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not healthy in {timeout}s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("client-server")
    (folder / "mods").mkdir()
    (folder / "mods" / "fixme.py").write_text(FIXME)
    # The service runs only allowlisted modules (governance): this test's module is one.
    (folder / "governance.yaml").write_text("version: 1\npython:\n  allowed_modules: [fixme]\n")
    (folder / "greet.yaml").write_text(GREET)
    (folder / "slow.yaml").write_text(SLOW)
    (folder / "bad.yaml").write_text(BAD)
    (folder / "failing.yaml").write_text(FAILING.replace("FLAG", str(folder / "fixed")))
    return folder


@pytest.fixture(scope="module")
def server(workdir: Path) -> Iterator[Server]:
    running = Server(
        workdir,
        {
            "PYTHONPATH": str(workdir / "mods"),
            "ORCHESTRION_RATE_LIMIT_PER_SECOND": "0",
            "ORCHESTRION_GOVERNANCE_FILE": str(workdir / "governance.yaml"),
        },
    )
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def client(server: Server) -> Iterator[Client]:
    with Client(server.url, headers={"X-Client-ID": "e2e"}) as connected:
        yield connected


def orchestrion(
    *args: str, server: Server | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    extra = dict(env or {})
    if server is not None:
        extra["ORCHESTRION_SERVER_URL"] = server.url
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=120, env=_env(extra)
    )


# ---------------------------------------------------------------------------- the client


def test_sync_client_runs_a_workflow_end_to_end(client: Client, workdir: Path) -> None:
    execution = client.run(workdir / "greet.yaml", {"name": "ada"}, timeout=60)
    assert execution.ok and execution.result == {"hello": "hello ada"}
    assert execution.node_states == dict.fromkeys(("input", "hello", "output"), NodeState.COMPLETED)
    data = execution.to_dict()
    assert data["status"] == "COMPLETED" and data["nodes"]["hello"]["output"] == "hello ada"
    assert data["duration_ms"] is not None and data["duration_ms"] >= 0


def test_every_workflow_method(client: Client, workdir: Path) -> None:
    submitted = client.submit(GREET, idempotency_key="e2e-submit")
    assert client.submit(GREET, idempotency_key="e2e-submit").execution_id == (
        submitted.execution_id
    )
    assert client.status(submitted.execution_id).status is ExecutionStatus.PENDING
    client.trigger(submitted.execution_id, {"name": "bo"}, idempotency_key="e2e-trigger")
    client.trigger(submitted.execution_id, {"name": "bo"}, idempotency_key="e2e-trigger")
    done = client.wait(submitted.execution_id, timeout=60, stream=True)
    assert done.result == {"hello": "hello bo"}
    lean = client.status(submitted.execution_id, include_outputs=False)
    assert lean.nodes["hello"].output is None and lean.nodes["hello"].attempt == 1
    results = client.results(submitted.execution_id)
    assert results.completed and results.result == {"hello": "hello bo"}

    listed = client.list_executions(workflow="greet", status="COMPLETED", limit=1)
    assert len(listed.items) == 1 and listed.items[0].workflow == "greet"
    every = list(client.iter_executions(workflow="greet", page_size=1))
    assert submitted.execution_id in {item.execution_id for item in every}
    assert len(every) == len({item.execution_id for item in every})

    definitions = client.list_definitions("greet")
    assert definitions and all(d.name == "greet" for d in definitions)
    definition = client.get_definition("greet", version=submitted.version)
    assert definition.node_ids == ["input", "hello", "output"] and definition.spec
    started = client.start_definition("greet", input_params={"name": "cy"})
    assert client.wait(started.execution_id, timeout=60).result == {"hello": "hello cy"}


def test_cancel_pause_resume_over_http(client: Client) -> None:
    submitted = client.submit(SLOW)
    client.trigger(submitted.execution_id)
    assert client.pause(submitted.execution_id).execution_id == submitted.execution_id
    _until(client, submitted.execution_id, ExecutionStatus.PAUSED)
    client.resume(submitted.execution_id)
    _until(client, submitted.execution_id, ExecutionStatus.RUNNING)
    client.cancel(submitted.execution_id)
    final = client.wait(submitted.execution_id, timeout=60)
    assert final.status is ExecutionStatus.CANCELLED
    with pytest.raises(Conflict) as caught:
        client.cancel(submitted.execution_id)
    assert isinstance(caught.value, InvalidTransition)


def _until(client: Client, execution_id: str, status: ExecutionStatus) -> None:
    for _ in range(300):
        if client.status(execution_id, include_outputs=False).status is status:
            return
        time.sleep(0.02)
    raise AssertionError(f"{execution_id} never became {status}")


def test_retry_over_http(client: Client, workdir: Path) -> None:
    failed = client.run(workdir / "failing.yaml", timeout=60)
    assert failed.status is ExecutionStatus.FAILED
    assert "not fixed yet" in (failed.nodes["b"].error or {})["message"]
    (workdir / "fixed").write_text("ok")
    try:
        client.retry(failed.execution_id)
        done = client.wait(failed.execution_id, timeout=60)
    finally:
        (workdir / "fixed").unlink()
    assert done.ok and done.nodes["b"].output == "fixed" and done.nodes["a"].attempt == 1


def test_events_and_the_live_streams_with_resume(client: Client) -> None:
    first = client.run(GREET, timeout=60)
    page = client.events(first.execution_id)
    seqs = [event.seq for event in page.items]
    assert page.items[-1].type == "execution.completed" and page.next_after == seqs[-1]
    with closing(client.stream_events(first.execution_id)) as stream:
        assert [event.seq for event in stream] == seqs
    with closing(client.stream_events(first.execution_id, last_event_id=seqs[1])) as stream:
        assert [event.seq for event in stream] == seqs[2:]

    # The global stream never ends: read up to a mark, stop, resume from the last id seen.
    mark = client.events(after=0, limit=1000).next_after
    second = client.run(GREET, timeout=60)
    seen: list[int] = []
    with closing(client.stream_events(last_event_id=mark)) as stream:
        for event in stream:
            seen.append(event.seq)
            if len(seen) == 3:
                break
    with closing(client.stream_events(last_event_id=seen[-1])) as stream:
        for event in stream:
            seen.append(event.seq)
            if event.execution_id == second.execution_id and event.is_final:
                break
    assert seen == sorted(set(seen)) and seen[0] > mark
    assert seen == [e.seq for e in client.events(second.execution_id).items]


def test_health_and_metrics(client: Client) -> None:
    health = client.health()
    assert health.ok and health.version
    assert "orchestrion_http_requests_total" in client.metrics()


def test_errors_map_to_exception_types(client: Client, server: Server) -> None:
    with pytest.raises(NotFound) as missing:
        client.status("no-such-execution")
    assert isinstance(missing.value, ExecutionNotFound) and missing.value.request_id
    with pytest.raises(InvalidDefinition) as invalid:
        client.submit(BAD)
    assert isinstance(invalid.value, DefinitionError)
    assert any(i.node == "a" and "retries" in str(i) for i in invalid.value.issues)
    strict = GREET.replace("name: {type: string, default: world}", "name: {type: integer}")
    submitted = client.submit(strict.replace("name: greet", "name: strict"))
    with pytest.raises(InvalidRequest) as bad_input:
        client.trigger(submitted.execution_id, {"name": "not a number"})
    assert bad_input.value.status == 422
    with pytest.raises(NotFound):
        client.get_definition("no-such-definition")
    with Client(f"http://127.0.0.1:{_free_port()}", timeout=2) as dead:
        with pytest.raises(ApiConnectionError) as unreachable:
            dead.health()
        assert "127.0.0.1" in str(unreachable.value)


def test_api_keys_over_http(tmp_path: Path) -> None:
    secured = Server(
        tmp_path,
        {
            "ORCHESTRION_API_KEYS": "k-op:operator,k-view:viewer",
            "ORCHESTRION_RATE_LIMIT_PER_SECOND": "0",
        },
    )
    try:
        with Client(secured.url) as anonymous, pytest.raises(Unauthorized):
            anonymous.list_executions()
        with Client(secured.url, api_key="k-view") as viewer, pytest.raises(Forbidden):
            viewer.submit(GREET)
        with Client(secured.url, api_key="k-op") as operator:
            assert operator.run(GREET, timeout=60).ok
        denied = orchestrion("list", env={"ORCHESTRION_SERVER_URL": secured.url})
        assert denied.returncode == 6 and "401" in denied.stderr
        allowed = orchestrion(
            "list", "--json", "--api-key", "k-view", env={"ORCHESTRION_SERVER_URL": secured.url}
        )
        assert allowed.returncode == 0, allowed.stderr
        assert len(json.loads(allowed.stdout)) == 1
    finally:
        secured.stop()


# ---------------------------------------------------------------------------- the CLI


def test_cli_run_on_the_server_exits_0_and_renders_the_table(server: Server, workdir: Path) -> None:
    shown = orchestrion("run", str(workdir / "greet.yaml"), "-i", "name=cli", server=server)
    assert shown.returncode == 0, shown.stderr
    assert "completed" in shown.stdout and "hello cli" in shown.stdout
    assert "hello" in shown.stderr  # live progress lines (from the event stream) on stderr

    as_json = orchestrion(
        "run", str(workdir / "greet.yaml"), "--server", server.url, "--json", "-i", "name=j"
    )
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["status"] == "COMPLETED" and data["result"] == {"hello": "hello j"}
    assert data["nodes"]["input"]["output"] == {"name": "j"}

    status = orchestrion("status", data["execution_id"], "--json", server=server)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout) == data
    listed = orchestrion("list", "--json", "-w", "greet", "-n", "2", server=server)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert len(rows) == 2 and rows[0]["execution_id"] == data["execution_id"]
    assert rows[0]["status"] == "COMPLETED" and rows[0]["workflow"] == "greet"
    table = orchestrion("list", "-s", "completed", server=server)
    assert table.returncode == 0 and data["execution_id"] in table.stdout


def test_cli_failing_run_exits_1_and_retry_after_fix_exits_0(server: Server, workdir: Path) -> None:
    failed = orchestrion("run", str(workdir / "failing.yaml"), "--json", server=server)
    assert failed.returncode == 1, failed.stderr
    data = json.loads(failed.stdout)
    assert data["status"] == "FAILED" and "not fixed yet" in data["nodes"]["b"]["error"]["message"]
    (workdir / "fixed").write_text("ok")
    try:
        retried = orchestrion("retry", data["execution_id"], "--json", server=server)
    finally:
        (workdir / "fixed").unlink()
    assert retried.returncode == 0, retried.stderr
    after = json.loads(retried.stdout)
    assert after["nodes"]["b"]["output"] == "fixed" and after["nodes"]["a"]["attempt"] == 1
    again = orchestrion("retry", data["execution_id"], server=server)
    assert again.returncode == 2 and "409" in again.stderr


def test_cli_bad_definition_exits_2_naming_node_and_field(server: Server, workdir: Path) -> None:
    result = orchestrion("run", str(workdir / "bad.yaml"), server=server)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "node 'a'" in result.stderr and "retries" in result.stderr
    assert "Traceback" not in result.stderr
    missing = orchestrion("run", str(workdir / "nope.yaml"), server=server)
    assert missing.returncode == 2 and "nope.yaml" in missing.stderr


def test_cli_cancel_pause_resume_status_on_the_server(server: Server, client: Client) -> None:
    submitted = client.submit(SLOW)
    client.trigger(submitted.execution_id)
    execution_id = submitted.execution_id
    paused = orchestrion("pause", execution_id, server=server)
    assert paused.returncode == 0, paused.stderr
    _until(client, execution_id, ExecutionStatus.PAUSED)
    shown = orchestrion("status", execution_id, server=server)
    assert shown.returncode == 0 and "paused" in shown.stdout
    cancelled = orchestrion("cancel", execution_id, server=server)
    assert cancelled.returncode == 0 and f"cancelled {execution_id}" in cancelled.stdout
    final = client.wait(execution_id, timeout=60)
    assert final.status is ExecutionStatus.CANCELLED
    twice = orchestrion("cancel", execution_id, server=server)
    assert twice.returncode == 2 and "409" in twice.stderr
    unknown = orchestrion("status", "no-such-id", server=server)
    assert unknown.returncode == 5 and "not found" in unknown.stderr

    other = client.submit(SLOW.replace("sleep: 30", "sleep: 0.3"))
    client.trigger(other.execution_id)
    client.pause(other.execution_id)
    _until(client, other.execution_id, ExecutionStatus.PAUSED)
    resumed = orchestrion("resume", other.execution_id, "--json", server=server)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "COMPLETED"
    no_id = orchestrion("resume", server=server)
    assert no_id.returncode == 2 and "execution id" in no_id.stderr


def test_cli_unreachable_server_exits_3() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    for execution in ("5c38", "01a2508f-5aab-7d3c-a40e-536dd973bb1b"):  # a part, a whole id
        result = orchestrion("status", execution, "--server", url)
        assert result.returncode == 3 and url in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
