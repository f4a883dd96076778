"""Races between the processes of ``orchestrion serve --workers N``, through real connections
pinned to each process: one start sent with one idempotency key to every process at once
(every route that starts with a key).

A repeated start used to lose the race for the execution's ownership to its own twin and
answer 409 to a caller that had done nothing wrong.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from workers_server import Pinned, WorkersServer

pytestmark = pytest.mark.slow

OPERATOR = "races-operator-key-0123456789"
AUTH = {"Authorization": f"Bearer {OPERATOR}"}
QUICK = {"name": "quick", "dag": {"nodes": [{"id": "a", "handler": "noop"}]}}
NAP = {
    "name": "nap",
    "dag": {"nodes": [{"id": "nap", "handler": "delay", "config": {"seconds": 60}}]},
}
GATE = {
    "name": "gate",
    "dag": {
        "nodes": [
            {"id": "sign_off", "handler": "approval"},
            {"id": "after", "handler": "noop", "dependencies": ["sign_off"]},
        ]
    },
}
ROUNDS = 8


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkersServer]:
    folder = tmp_path_factory.mktemp("races")
    env = {"ORCHESTRION_API_KEYS": f"{OPERATOR}:operator"}
    running = WorkersServer(folder, folder / "races.db", workers=3, env=env)
    try:
        yield running
    finally:
        assert running.stop() == 0, running.log.read_text()


@pytest.fixture
def every(server: WorkersServer) -> Iterator[list[Pinned]]:
    """A connection to each server process, as an operator."""
    pinned = [Pinned.to(server, pid, AUTH) for pid in server.children()]
    yield pinned
    for through in pinned:
        through.close()


def _at_once(
    every: list[Pinned], path: str, body: Any, headers: dict[str, str]
) -> list[tuple[int, Any]]:
    """``POST path`` through every process at the same moment: each one's status and body."""
    answers: list[tuple[int, Any]] = []
    gate = threading.Barrier(len(every))

    def one(through: Pinned) -> None:
        gate.wait()
        status, answer, _ = through.call("POST", path, body, headers)
        answers.append((status, answer))

    threads = [threading.Thread(target=one, args=(through,)) for through in every]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return answers


def _submitted(through: Pinned, spec: dict[str, Any]) -> str:
    status, body, _ = through.call("POST", "/v1/workflow", spec)
    assert status == 201, body
    return str(body["execution_id"])


def _one_start(answers: list[tuple[int, Any]], count: int) -> None:
    """Every answer is the start's 202, all of them of one execution."""
    assert len(answers) == count, answers
    assert all(status == 202 for status, _ in answers), answers
    assert len({body["execution_id"] for _, body in answers}) == 1, answers


@pytest.mark.parametrize(
    "path", ["/v1/workflow/trigger/{id}", "/api/v1/workflow/trigger/{id}", "/workflow/trigger/{id}"]
)
def test_one_trigger_key_sent_to_every_process_at_once_answers_202_everywhere(
    every: list[Pinned], path: str
) -> None:
    for attempt in range(ROUNDS):
        execution_id = _submitted(every[0], QUICK)
        key = {"Idempotency-Key": f"trigger-{attempt}-{time.monotonic_ns()}"}
        where = path.format(id=execution_id)
        answers = _at_once(every, where, {}, key)
        _one_start(answers, len(every))


def test_one_start_key_sent_to_every_process_at_once_answers_202_everywhere(
    every: list[Pinned],
) -> None:
    _submitted(every[0], QUICK)
    for attempt in range(ROUNDS):
        key = {"Idempotency-Key": f"start-{attempt}-{time.monotonic_ns()}"}
        answers = _at_once(every, "/v1/definitions/quick/executions", {}, key)
        _one_start(answers, len(every))


@pytest.mark.parametrize("where", ["header", "body"])
def test_one_swarmlite_start_key_sent_to_every_process_at_once_answers_202_everywhere(
    every: list[Pinned], where: str
) -> None:
    for attempt in range(ROUNDS):
        key = f"swarm-{where}-{attempt}-{time.monotonic_ns()}"
        body: dict[str, Any] = {"definition": QUICK}
        headers = {"Idempotency-Key": key} if where == "header" else {}
        if where == "body":
            body["idempotency_key"] = key
        answers = _at_once(every, "/workflows/start", body, headers)
        _one_start(answers, len(every))
