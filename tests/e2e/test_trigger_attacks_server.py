"""Attacks on the trigger surfaces through one real ``orchestrion serve`` (uvicorn, SQLite,
API keys): schedules that could never fire, idempotency keys that belong to the engine,
schedule ids and definition names with a ``/``, and follow-on loops. Each test sends what an
outside caller with an operator key could send, and checks what that caller then sees."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from test_api_server import Server

pytestmark = pytest.mark.slow

ADMIN, OPERATOR, VIEWER = "adm-key-0123456789", "op-key-0123456789", "view-key-0123456789"
KEYS = f"{ADMIN}:admin,{OPERATOR}:operator,{VIEWER}:viewer"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("trigger-attacks")
    env = {"ORCHESTRION_API_KEYS": KEYS, "ORCHESTRION_SCHEDULER_INTERVAL": "0.2"}
    running = Server(folder, folder / "attacks.db", env)
    try:
        yield running
    finally:
        assert running.stop() == 0, running.log.read_text()


def poll(check: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.05)


def submit(server: Server, text: str, **headers: str) -> httpx.Response:
    sent = {**bearer(OPERATOR), "Content-Type": "application/yaml", **headers}
    return httpx.post(f"{server.url}/v1/workflow", content=text, headers=sent, timeout=30)


def scheduled(name: str, schedule: str, extra: str = "") -> str:
    return (
        f'name: "{name}"\ntriggers:\n  - type: scheduled\n    name: tick\n'
        f'    schedule: "{schedule}"\n{extra}dag:\n  nodes:\n    - {{id: a, handler: noop}}\n'
    )


@pytest.mark.parametrize(
    ("schedule", "extra", "words"),
    [
        ("0 0 30 2 *", "", "never fires"),
        ("0 0 31 4 * *", "", "never fires"),
        ("R * * * *", "", "random values"),
        ("* * * * *", "    start: 1.0e+20\n", "less than or equal"),
        ("* * * * *", '    end: "0001-01-01T00:00:00"\n', "greater than or equal"),
    ],
)
def test_a_schedule_that_could_never_fire_is_refused_and_others_keep_firing(
    server: Server, schedule: str, extra: str, words: str
) -> None:
    answer = submit(server, scheduled("never", schedule, extra))
    assert answer.status_code == 422, answer.text
    assert words in answer.text and "triggers[0]" in answer.text
    listed = httpx.get(f"{server.url}/v1/schedules", headers=bearer(VIEWER))
    assert listed.status_code == 200
    assert "never:tick" not in {s["id"] for s in listed.json()["schedules"]}


def test_schedules_keep_firing_beside_refused_ones(server: Server) -> None:
    assert submit(server, scheduled("beat", "* * * * * *")).status_code == 201
    submit(server, scheduled("never", "0 0 30 2 *"))

    def fired() -> list[Any]:
        got = httpx.get(f"{server.url}/v1/schedules/beat:tick", headers=bearer(VIEWER))
        assert got.status_code == 200, got.text
        return [f for f in got.json()["recent_firings"] if f["status"] == "started"]

    poll(lambda: len(fired()) >= 2)
    paused = httpx.post(f"{server.url}/v1/schedules/beat:tick/pause", headers=bearer(OPERATOR))
    assert paused.status_code == 200


LISTENER = """\
name: policy-review
inputs:
  document: {type: string}
triggers:
  - {type: event, event_type: policy.updated}
dag:
  nodes:
    - {id: review, handler: noop}
"""
SPY = "name: spy\ndag:\n  nodes:\n    - {id: keep, handler: noop}\n"


def test_an_event_key_cannot_be_taken_first_to_run_another_workflow(server: Server) -> None:
    assert submit(server, LISTENER).status_code == 201
    squat = submit(server, SPY, **{"Idempotency-Key": "event:evt-9:policy-review"})
    assert squat.status_code == 422, squat.text
    assert "the engine's own" in squat.json()["detail"]
    sent = httpx.post(
        f"{server.url}/v1/events/policy.updated",
        json={"id": "evt-9", "document": "merger.pdf"},
        headers=bearer(OPERATOR),
    )
    assert sent.status_code == 202, sent.text
    [started] = sent.json()["executions"]
    detail = httpx.get(
        f"{server.url}/v1/workflows/{started['execution_id']}", headers=bearer(ADMIN)
    ).json()
    assert detail["workflow"] == "policy-review"
    assert detail["inputs"] == {"document": "merger.pdf"}


@pytest.mark.parametrize("name", ["team/nightly", "a/../b", "q?x#y"])
def test_a_schedule_of_a_name_with_a_slash_can_be_paused_and_deleted(
    server: Server, name: str
) -> None:
    assert submit(server, scheduled(name, "0 2 * * *")).status_code == 201
    quoted = quote(f"{name}:tick", safe="")
    for verb in ("pause", "resume", "trigger"):
        answer = httpx.post(f"{server.url}/v1/schedules/{quoted}/{verb}", headers=bearer(OPERATOR))
        assert answer.status_code in (200, 202), answer.text
    shown = httpx.get(f"{server.url}/v1/schedules/{quoted}", headers=bearer(VIEWER))
    assert shown.status_code == 200 and shown.json()["id"] == f"{name}:tick"
    named = httpx.get(f"{server.url}/v1/definitions/{quote(name, safe='')}", headers=bearer(VIEWER))
    assert named.status_code == 200 and named.json()["name"] == name
    gone = httpx.delete(f"{server.url}/v1/schedules/{quoted}", headers=bearer(OPERATOR))
    assert gone.status_code == 200 and gone.json()["state"] == "deleted"
