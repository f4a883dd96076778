"""Races between the processes of ``orchestrion serve --workers N``, through real connections
pinned to each process: one start sent with one idempotency key to every process at once
(every route that starts with a key), and control verbs sent just after the process that
drove the execution was killed with SIGKILL.

Both used to answer 409 to a caller that had done nothing wrong: a repeated start lost the
race for the execution's ownership to its own twin, and a verb sent to a dead owner was
refused with "run the command again" once a sibling took the execution over.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
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


def _until(check: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("timed out")


def _started(through: Pinned, spec: dict[str, Any]) -> str:
    execution_id = _submitted(through, spec)
    status, body, _ = through.call("POST", f"/v1/workflow/trigger/{execution_id}", {})
    assert status == 202, body
    return execution_id


def _status(through: Pinned, execution_id: str) -> str:
    status, body, _ = through.call("GET", f"/v1/workflows/{execution_id}")
    assert status == 200, body
    return str(body["status"])


def _waiting(through: Pinned, execution_id: str) -> bool:
    return _status(through, execution_id) == "WAITING"


def test_verbs_sent_just_after_the_driving_process_was_killed_are_carried_out(
    tmp_path: Path,
) -> None:
    """Cancel, pause, resume, approve and reject sent, through a live process, for the
    executions of a process killed a moment before: each is carried out (by whichever
    process took the execution over), none answered 409."""
    server = WorkersServer(
        tmp_path, tmp_path / "k.db", workers=3, env={"ORCHESTRION_API_KEYS": f"{OPERATOR}:operator"}
    )
    try:
        victim, asker, _ = server.children()
        driver, through = Pinned.to(server, victim, AUTH), Pinned.to(server, asker, AUTH)
        naps = [_started(driver, NAP) for _ in range(3)]
        gates = [_started(driver, GATE) for _ in range(2)]
        for execution_id in [*naps, *gates]:
            _until(lambda e=execution_id: _waiting(through, e))
        os.kill(victim, signal.SIGKILL)
        driver.close()

        calls = [
            ("DELETE", f"/v1/workflows/{naps[0]}", "CANCELLED"),
            ("POST", f"/v1/workflows/{naps[1]}/pause", "PAUSED"),
            ("POST", f"/workflows/{naps[2]}/stop", "CANCELLED"),
            ("POST", f"/v1/workflows/{gates[0]}/nodes/sign_off/approve", "COMPLETED"),
            ("POST", f"/v1/workflows/{gates[1]}/nodes/sign_off/reject", "FAILED"),
        ]
        for method, path, _ in calls:
            status, body, _ = through.call(method, path, {} if method == "POST" else None)
            assert status == 202, (path, body)
        for (_, _, wanted), execution_id in zip(calls, [*naps, *gates], strict=True):
            _until(lambda e=execution_id, w=wanted: _status(through, e) == w)

        status, body, _ = through.call("POST", f"/v1/workflows/{naps[1]}/resume", {})
        assert status == 202, body
        assert body["status"] == "WAITING", body
        through.close()
    finally:
        assert server.stop() == 0, server.log.read_text()


def test_verbs_for_a_stopped_owner_are_answered_as_requested_and_carried_out_later(
    tmp_path: Path,
) -> None:
    """While the process driving the executions is stopped (SIGSTOP: a process that hangs),
    cancel, pause, resume, approve and reject sent through the other answer 202, saying the
    verb is requested (not 409: the request stays recorded), and once the stopped process
    goes on, it carries every one of them out."""
    env = {"ORCHESTRION_API_KEYS": f"{OPERATOR}:operator"}
    server = WorkersServer(tmp_path, tmp_path / "h.db", workers=2, env=env)
    try:
        owner, other = server.children()
        driver = Pinned.to(server, owner, AUTH)
        naps = [_started(driver, NAP) for _ in range(3)]
        gates = [_started(driver, GATE) for _ in range(2)]
        status, body, _ = driver.call("POST", f"/v1/workflows/{naps[2]}/pause", {})
        assert status == 202 and body["status"] == "PAUSED", body
        for execution_id in [*naps[:2], *gates]:
            _until(lambda e=execution_id: _waiting(driver, e))
        driver.close()
        calls = [
            ("DELETE", f"/v1/workflows/{naps[0]}", naps[0], "CANCELLED"),
            ("POST", f"/v1/workflows/{naps[1]}/pause", naps[1], "PAUSED"),
            ("POST", f"/v1/workflows/{naps[2]}/resume", naps[2], "WAITING"),
            ("POST", f"/v1/workflows/{gates[0]}/nodes/sign_off/approve", gates[0], "COMPLETED"),
            ("POST", f"/v1/workflows/{gates[1]}/nodes/sign_off/reject", gates[1], "FAILED"),
        ]
        links = [Pinned.to(server, other, AUTH) for _ in calls]
        answers: list[tuple[int, Any]] = []

        def send(link: Pinned, method: str, path: str) -> None:
            status, body, _ = link.call(method, path, {} if method == "POST" else None)
            answers.append((status, body))

        os.kill(owner, signal.SIGSTOP)
        try:
            threads = [
                threading.Thread(target=send, args=(link, method, path))
                for link, (method, path, _, _) in zip(links, calls, strict=True)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
        finally:
            os.kill(owner, signal.SIGCONT)
        assert len(answers) == len(calls), answers
        for status, body in answers:
            assert status == 202, body
            assert "(requested; poll GET /v1/workflows/" in body["message"], body
        for _, _, execution_id, wanted in calls:
            _until(lambda e=execution_id, w=wanted: _status(links[0], e) == w)
        for link in links:
            link.close()
    finally:
        assert server.stop() == 0, server.log.read_text()
