"""Malformed input against a real ``orchestrion serve`` with API keys: the same tables as
the in-process tests (tests/malformed.py), over real sockets, where uvicorn and h11 decode
the request first. Every answer is a 4xx problem, and the server log holds no traceback."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_api_server import Server

from malformed import BAD_DURATIONS, BAD_INSTANTS, BODY_CASES, TEMPLATE_CASES, definition

pytestmark = pytest.mark.slow

KEY = "serve-admin-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("malformed")
    running = Server(folder, folder / "m.db", {"ORCHESTRION_API_KEYS": f"{KEY}:admin"})
    try:
        yield running
    finally:
        log = running.log.read_text()
        assert running.stop() == 0, log
    assert "Traceback" not in log and '"status": 500' not in log, log[-5000:]


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30, headers=AUTH) as running:
        yield running


@pytest.fixture(scope="module")
def pending(client: httpx.Client) -> tuple[str, str]:
    submitted = client.post("/v1/workflow", json=definition())
    assert submitted.status_code == 201, submitted.text
    return submitted.json()["execution_id"], submitted.json()["name"]


def is_problem(response: httpx.Response, status: int, says: str = "") -> bool:
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "Traceback" not in response.text
    assert says.lower() in response.text.lower(), response.text[:500]
    return True


@pytest.mark.parametrize("case", BODY_CASES, ids=lambda case: case.label)
def test_malformed_bodies(client: httpx.Client, pending: tuple[str, str], case) -> None:  # type: ignore[no-untyped-def]
    execution_id, name = pending
    path = {
        "submit": "/v1/workflow",
        "trigger": f"/v1/workflow/trigger/{execution_id}",
        "start": f"/v1/definitions/{name}/executions",
        "approve": f"/v1/workflows/{execution_id}/nodes/b/approve",
        "event": "/v1/events/malformed.test",
    }[case.route]
    response = client.post(path, content=case.body, headers={"Content-Type": case.content_type})
    assert is_problem(response, case.status, case.says)
    assert client.get(f"/v1/workflows/{execution_id}").json()["status"] == "PENDING"


@pytest.mark.parametrize(("template", "says"), TEMPLATE_CASES, ids=lambda v: str(v)[:40])
def test_template_errors(client: httpx.Client, template: str, says: str) -> None:
    response = client.post("/v1/workflow", json=definition(config={"value": template}))
    assert is_problem(response, 422, says)
    assert response.json()["errors"][0]["node"] == "b"


@pytest.mark.parametrize("older_than", BAD_DURATIONS)
def test_purge_durations(client: httpx.Client, older_than: str) -> None:
    response = client.post("/v1/admin/purge", params={"older_than": older_than})
    assert is_problem(response, 422, "older_than")


@pytest.mark.parametrize("name", ["since", "until"])
@pytest.mark.parametrize("value", BAD_INSTANTS)
def test_audit_instants(client: httpx.Client, name: str, value: str) -> None:
    assert is_problem(client.get("/v1/audit", params={name: value}), 422, name)


@pytest.mark.parametrize("name", ["created_after", "created_before"])
@pytest.mark.parametrize("value", BAD_INSTANTS)
def test_list_instants(client: httpx.Client, name: str, value: str) -> None:
    assert is_problem(client.get("/v1/workflows", params={name: value}), 422, name)


def raw_request(server: Server, head: bytes) -> bytes:
    """Send ``head`` (a request without a body) as is and read the whole answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    "target",
    [
        b"/v1/workflows/%ED%A0%80",
        b"/v1/workflows/\xff",  # a raw byte in the request line
        b"/v1/workflows/a%00b",
        b"/v1/workflows?workflow=%ED%A0%80",
        b"/v1/definitions?name=%FF",
        b"/v1/events?type=%00",
    ],
)
def test_request_lines_that_are_not_text(server: Server, target: bytes) -> None:
    head = (
        b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + KEY.encode()
        + b"\r\nConnection: close\r\n\r\n"
    )  # fmt: skip
    answer = raw_request(server, head)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:300]
    assert b"Traceback" not in answer


@pytest.mark.parametrize(
    ("header", "value"),
    [
        (b"Authorization", b"Bearer " + KEY.encode() + b"\xed\xa0\x80"),
        (b"Authorization", b"Bearer \xff\xfe"),
        (b"Idempotency-Key", b"k\xe9"),
        (b"X-Client-ID", b"\xc3\xa9"),
        (b"Last-Event-ID", b"\xff"),
    ],
)
def test_header_values_that_are_not_ascii(server: Server, header: bytes, value: bytes) -> None:
    """Read as Latin-1: an unknown key is 401, other headers are taken as they are."""
    head = (
        b"POST /v1/workflow HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + KEY.encode()
        + b"\r\n" + header + b": " + value + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )  # fmt: skip
    if header == b"Authorization":  # the only one: replace, not add
        head = head.replace(b"Authorization: Bearer " + KEY.encode() + b"\r\n", b"", 1)
    answer = raw_request(server, head)
    if header == b"Authorization":  # the gate answers first: no such key
        assert answer.startswith(b"HTTP/1.1 401 "), answer[:300]
    else:  # an empty body is no definition
        assert answer.startswith(b"HTTP/1.1 422 "), answer[:300]
    assert b"Traceback" not in answer


def test_a_server_with_a_non_ascii_api_key_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="printable ASCII"):
        Server(tmp_path, tmp_path / "k.db", {"ORCHESTRION_API_KEYS": "clé:admin"})
