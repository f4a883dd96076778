"""Nodes that exhaust their retries are dead letters, as a user meets them in embedded mode.

A real ``orchestrion run`` on a SQLite file whose python node fails on every attempt (until a
marker file exists) leaves a failed execution; ``orchestrion dlq list --db`` shows the node,
``dlq show`` its error, ``dlq retry`` (the failure fixed) reruns the execution from it to
completion and it leaves the list; ``dlq drop`` records another as handled. The execution
part of a letter's id may be typed as its first or last characters, as every execution id. The
same through a real ``orchestrion serve``: ``/v1/admin/dlq`` and ``orchestrion dlq --server``.
The error of an execution encrypted at rest is listed decrypted, and stays sealed in the file.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api_server import Server
from test_cli import orchestrion
from test_sealed_processes import workflow

from orchestrion.cli.exits import EXIT_NOT_FOUND
from sealed_values import Secrets, sqlite_bytes

pytestmark = pytest.mark.slow

ADMIN = {"Authorization": "Bearer adm-key"}
VIEWER = {"Authorization": "Bearer view-key"}

FLAKY = (
    "import os\n"
    "def until_fixed(path):\n"
    "    if not os.path.exists(path):\n"
    "        raise RuntimeError('the marker file is missing: ' + path)\n"
    "    return 'fixed'\n"
)

FLOW = """\
name: exhausting
dag:
  nodes:
    - {id: first, handler: noop}
    - id: flaky
      handler: python
      dependencies: [first]
      retry: {max_attempts: 2, initial_delay: 0.01, retry_on: [all]}
      config: {function: "flakymod:until_fixed", params: {path: "@FLAG@"}}
    - {id: after, handler: noop, dependencies: [flaky]}
"""


def _setup(tmp_path: Path) -> tuple[Path, Path, Path, dict[str, str]]:
    module = tmp_path / "mods" / "flakymod.py"
    module.parent.mkdir()
    module.write_text(FLAKY)
    marker = tmp_path / "fixed"
    flow = tmp_path / "flow.yaml"
    flow.write_text(FLOW.replace("@FLAG@", str(marker)))
    return flow, tmp_path / "dlq.db", marker, {"PYTHONPATH": str(module.parent)}


def _failed_run(flow: Path, db: Path, env: dict[str, str]) -> str:
    result = orchestrion("run", str(flow), "--db", str(db), "--json", env=env)
    assert result.returncode == 1, result.stderr
    data = json.loads(result.stdout)
    assert data["status"] == "FAILED"
    assert data["nodes"]["flaky"]["state"] == "FAILED"
    assert data["nodes"]["flaky"]["attempt"] == 2
    return str(data["execution_id"])


def _listed(*args: str, env: dict[str, str]) -> dict[str, Any]:
    result = orchestrion("dlq", "list", "--json", *args, env=env)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_an_exhausted_node_is_listed_retried_and_leaves_the_list(tmp_path: Path) -> None:
    flow, db, marker, env = _setup(tmp_path)
    execution_id = _failed_run(flow, db, env)
    entry = f"{execution_id}.flaky"

    page = _listed("--db", str(db), env=env)
    assert page["total"] == 1 and page["next_after"] is None
    [item] = page["items"]
    assert item["id"] == entry and item["kind"] == "node"
    assert item["execution_id"] == execution_id and item["node_id"] == "flaky"
    assert item["attempt"] == 2 and item["workflow"] == "exhausting"
    assert "the marker file is missing" in item["message"]
    assert item["category"] and item["parked_at"] > 0

    table = orchestrion("dlq", "list", "--db", str(db), env=env)
    assert table.returncode == 0 and entry in table.stdout and "node" in table.stdout
    shown = orchestrion("dlq", "show", entry, "--db", str(db), env=env)
    assert shown.returncode == 0, shown.stderr
    assert "the marker file is missing" in " ".join(shown.stdout.split())

    # Still broken: the rerun fails again (exit 1) and the node is listed again, a new attempt.
    again = orchestrion("dlq", "retry", entry, "--db", str(db), env=env)
    assert again.returncode == 1, (again.stdout, again.stderr)
    [item] = _listed("--db", str(db), env=env)["items"]
    assert item["id"] == entry and item["attempt"] == 3

    marker.touch()  # the failure fixed
    retried = orchestrion("dlq", "retry", entry, "--db", str(db), "--json", env=env)
    assert retried.returncode == 0, retried.stderr
    action = json.loads(retried.stdout)
    assert action["action"] == "retried" and action["message"].endswith("completed")
    status = orchestrion("status", execution_id, "--db", str(db), "--json", env=env)
    assert json.loads(status.stdout)["status"] == "COMPLETED"
    assert _listed("--db", str(db), env=env) == {"items": [], "next_after": None, "total": 0}
    gone = orchestrion("dlq", "show", entry, "--db", str(db), env=env)
    assert gone.returncode == EXIT_NOT_FOUND and "no dead letter" in gone.stderr


def test_a_dropped_node_is_listed_no_more_and_filters_and_pages_work(tmp_path: Path) -> None:
    flow, db, _marker, env = _setup(tmp_path)
    first = _failed_run(flow, db, env)
    second = _failed_run(flow, db, env)

    page = _listed("--db", str(db), "--limit", "1", env=env)
    assert [i["execution_id"] for i in page["items"]] == [first]  # oldest failure first
    assert page["next_after"] == "node-1" and page["total"] == 2
    rest = _listed("--db", str(db), "--after", "node-1", env=env)
    assert [i["execution_id"] for i in rest["items"]] == [second] and rest["next_after"] is None
    assert _listed("--db", str(db), "--workflow", "other", env=env)["total"] == 0
    assert _listed("--db", str(db), "--since", "2999-01-01T00:00:00", env=env)["total"] == 0
    assert _listed("--db", str(db), "--since", "0", env=env)["total"] == 2
    bad_since = orchestrion("dlq", "list", "--db", str(db), "--since", "yesterday", env=env)
    assert bad_since.returncode == 2 and "--since" in bad_since.stderr
    assert _listed("--db", str(db), "--workflow", "exhausting", env=env)["total"] == 2

    dropped = orchestrion("dlq", "drop", f"{first}.flaky", "--db", str(db), env=env)
    assert dropped.returncode == 0, dropped.stderr
    assert [i["execution_id"] for i in _listed("--db", str(db), env=env)["items"]] == [second]
    twice = orchestrion("dlq", "drop", f"{first}.flaky", "--db", str(db), env=env)
    assert twice.returncode == EXIT_NOT_FOUND and "no dead letter" in twice.stderr
    # The execution stays failed: a drop only records that a person handled it.
    status = orchestrion("status", first, "--db", str(db), "--json", env=env)
    assert json.loads(status.stdout)["status"] == "FAILED"

    for bad in ("nonsense", f"{first}.first", f"{first}.no_such_node", "x.y.z"):
        result = orchestrion("dlq", "show", bad, "--db", str(db), env=env)
        assert result.returncode == EXIT_NOT_FOUND and "no dead letter" in result.stderr, (
            bad,
            result,
        )


def _end(ids: list[str]) -> str:
    """The shortest end of ``ids[0]`` that no other id starts or ends with."""
    first = ids[0]
    return next(
        first[-n:]
        for n in range(1, len(first))
        if not any(o.endswith(first[-n:]) or o.startswith(first[-n:]) for o in ids[1:])
    )


def _shared(one: str, other: str) -> str:
    """The first characters both ids begin with."""
    size = next((i for i, (a, b) in enumerate(zip(one, other, strict=True)) if a != b), len(one))
    return one[:size]


def test_a_dead_letter_is_found_by_the_first_or_last_characters_of_its_execution(
    tmp_path: Path,
) -> None:
    flow, db, _marker, env = _setup(tmp_path)
    first = _failed_run(flow, db, env)
    second = _failed_run(flow, db, env)
    local = ("--db", str(db))

    # Made close together, the two ids share their first characters: the last tell them apart.
    tail = _end([first, second])
    shown = orchestrion("dlq", "show", f"{tail}.flaky", "--json", *local, env=env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["id"] == f"{first}.flaky"
    shared = _shared(first, second)
    assert shared, (first, second)
    ambiguous = orchestrion("dlq", "show", f"{shared}.flaky", *local, env=env)
    assert ambiguous.returncode == 2 and "ambiguous" in ambiguous.stderr, ambiguous.stderr
    assert first in ambiguous.stderr and second in ambiguous.stderr
    nothing = orchestrion("dlq", "show", "fff0.flaky", *local, env=env)
    assert nothing.returncode == EXIT_NOT_FOUND and "'fff0' not found" in nothing.stderr

    again = orchestrion("dlq", "retry", f"{_end([second, first])}.flaky", *local, env=env)
    assert again.returncode == 1, (again.stdout, again.stderr)  # still broken: failed again
    assert f"retried {second}.flaky" in again.stdout
    dropped = orchestrion("dlq", "drop", f"{tail}.flaky", *local, env=env)
    assert dropped.returncode == 0, dropped.stderr
    assert f"dropped {first}.flaky" in dropped.stdout
    [left] = _listed(*local, env=env)["items"]
    assert left["id"] == f"{second}.flaky" and left["attempt"] == 3


def _wait_status(client: httpx.Client, execution_id: str, status: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        body = client.get(f"/v1/workflows/{execution_id}", headers=ADMIN).json()
        if body["status"] == status:
            return
        assert time.monotonic() < deadline, (body["status"], body["nodes"])
        time.sleep(0.05)


def test_dead_letter_nodes_through_a_server(tmp_path: Path) -> None:
    flow, db, marker, env = _setup(tmp_path)
    retried_id = _failed_run(flow, db, env)
    dropped_id = _failed_run(flow, db, env)
    # A service runs only allowlisted python modules (governance): this test's module is one.
    policy = tmp_path / "governance.yaml"
    policy.write_text("version: 1\npython:\n  allowed_modules: [flakymod]\n")
    server_env = {
        **env,
        "ORCHESTRION_API_KEYS": "adm-key:admin,view-key:viewer",
        "ORCHESTRION_GOVERNANCE_FILE": str(policy),
    }
    server = Server(tmp_path, db, server_env)
    remote = ["--server", server.url, "--api-key", "adm-key"]
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert client.get("/v1/admin/dlq", headers=VIEWER).status_code == 403
            page = client.get("/v1/admin/dlq", headers=ADMIN)
            assert page.status_code == 200, page.text
            body = page.json()
            assert [i["id"] for i in body["items"]] == [
                f"{retried_id}.flaky",
                f"{dropped_id}.flaky",
            ]
            assert {i["kind"] for i in body["items"]} == {"node"}
            one = client.get(f"/v1/admin/dlq/{retried_id}.flaky", headers=ADMIN).json()
            assert "the marker file is missing" in one["message"] and one["payload"] == ""
            assert client.get("/v1/admin/dlq/1-0", headers=ADMIN).status_code == 404
            missing = client.get(f"/v1/admin/dlq/{retried_id}.after", headers=ADMIN)
            assert missing.status_code == 404
            filtered = client.get(
                "/v1/admin/dlq", params={"workflow": "nope"}, headers=ADMIN
            ).json()
            assert filtered["total"] == 0
            for since in ("1e308", "yesterday", "-1"):
                bad = client.get("/v1/admin/dlq", params={"since": since}, headers=ADMIN)
                assert bad.status_code == 422 and "since" in bad.text, (since, bad.text)
            early = client.get("/v1/admin/dlq", params={"since": "0"}, headers=ADMIN).json()
            assert early["total"] == 2

            cli = _listed(*remote, env=env)
            assert [i["id"] for i in cli["items"]] == [i["id"] for i in body["items"]]

            # The last characters of an execution id name it on the server too.
            tail = _end([retried_id, dropped_id])
            shown = orchestrion("dlq", "show", f"{tail}.flaky", "--json", *remote, env=env)
            assert shown.returncode == 0, shown.stderr
            assert json.loads(shown.stdout)["id"] == f"{retried_id}.flaky"
            shared = _shared(retried_id, dropped_id)
            assert shared, (retried_id, dropped_id)
            ambiguous = orchestrion("dlq", "drop", f"{shared}.flaky", *remote, env=env)
            assert ambiguous.returncode == 2 and dropped_id in ambiguous.stderr, ambiguous.stderr
            nothing = orchestrion("dlq", "show", "fff0.flaky", *remote, env=env)
            assert nothing.returncode == EXIT_NOT_FOUND, nothing.stderr

            # Through the server as here: the rerun is followed to its end, and one that
            # fails again is exit 1.
            failed = orchestrion("dlq", "retry", f"{tail}.flaky", *remote, env=env)
            assert failed.returncode == 1, (failed.stdout, failed.stderr)
            assert failed.stdout.rstrip().endswith(": failed"), failed.stdout
            marker.touch()
            retry = orchestrion("dlq", "retry", f"{tail}.flaky", *remote, env=env)
            assert retry.returncode == 0, retry.stderr
            assert f"retried {retried_id}.flaky" in retry.stdout
            assert retry.stdout.rstrip().endswith(": completed"), retry.stdout
            _wait_status(client, retried_id, "COMPLETED")

            dropped = client.delete(f"/v1/admin/dlq/{dropped_id}.flaky", headers=ADMIN)
            assert dropped.status_code == 202 and dropped.json()["action"] == "dropped"
            assert client.get("/v1/admin/dlq", headers=ADMIN).json()["total"] == 0
            again = client.post(f"/v1/admin/dlq/{dropped_id}.flaky/retry", headers=ADMIN)
            assert again.status_code == 404
    finally:
        assert server.stop() == 0


def test_a_sealed_executions_dead_letter_reads_back_decrypted(tmp_path: Path) -> None:

    secrets = Secrets()
    generated = orchestrion("keys", "generate", "--id", "k1")
    assert generated.returncode == 0, generated.stderr
    env = {"ORCHESTRION_ENCRYPTION_KEYS": generated.stdout.strip()}
    db = tmp_path / "sealed.db"
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps(secrets.inputs()))
    definition = tmp_path / "wf.json"
    definition.write_text(json.dumps(workflow(True)))
    ran = orchestrion(
        "run", str(definition), "--db", str(db), "--inputs-file", str(inputs), "--json", env=env
    )
    assert ran.returncode == 1, ran.stderr
    execution_id = json.loads(ran.stdout)["execution_id"]

    [item] = _listed("--db", str(db), env=env)["items"]
    assert item["id"] == f"{execution_id}.parse"
    assert secrets.marker in item["message"]  # the error, sealed in the file, read back
    blind = orchestrion("dlq", "list", "--db", str(db), env={"ORCHESTRION_ENCRYPTION_KEYS": ""})
    assert blind.returncode == 3 and "'k1'" in blind.stderr, blind.stderr
    assert not secrets.found_in(blind.stdout + blind.stderr)
    dropped = orchestrion("dlq", "drop", item["id"], "--db", str(db), env=env)
    assert dropped.returncode == 0, dropped.stderr
    assert _listed("--db", str(db), env=env)["total"] == 0
    found = secrets.found_in(sqlite_bytes(db))
    assert not found, f"{found} readable in the SQLite file after a listing and a drop"


def test_a_retry_that_stops_at_an_approval_exits_4_here_and_on_a_server(
    tmp_path: Path,
) -> None:
    flow, db, marker, env = _setup(tmp_path)
    gated = FLOW.replace("{id: after, handler: noop,", "{id: gate, handler: approval,")
    flow.write_text(gated.replace("@FLAG@", str(marker)))
    local_id = _failed_run(flow, db, env)
    remote_id = _failed_run(flow, db, env)
    marker.touch()
    here = orchestrion("dlq", "retry", f"{local_id}.flaky", "--db", str(db), env=env)
    assert here.returncode == 4, (here.stdout, here.stderr)
    assert here.stdout.rstrip().endswith(": waiting"), here.stdout
    assert f"orchestrion approve {local_id} gate --db {db}" in here.stderr, here.stderr
    policy = tmp_path / "governance.yaml"
    policy.write_text("version: 1\npython:\n  allowed_modules: [flakymod]\n")
    server_env = {
        **env,
        "ORCHESTRION_API_KEYS": "adm-key:admin",
        "ORCHESTRION_GOVERNANCE_FILE": str(policy),
    }
    server = Server(tmp_path, db, server_env)
    remote = ["--server", server.url, "--api-key", "adm-key"]
    try:
        there = orchestrion("dlq", "retry", f"{remote_id}.flaky", *remote, env=env)
        assert there.returncode == 4, (there.stdout, there.stderr)
        assert there.stdout.rstrip().endswith(": waiting"), there.stdout
        assert f"orchestrion approve {remote_id} gate --server {server.url}" in there.stderr
    finally:
        assert server.stop() == 0
