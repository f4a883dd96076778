"""The routes that answer plain requests directly (api/direct_route.py) answer exactly as
FastAPI's own handler does: every request here is sent twice, once as served and once with
the direct answer turned off, and the two answers (status, every header, body), the audit
records they leave and what the engine did must match.

In process (httpx over ASGI) on a real SQLite file, with API keys of every role, a required
header, the audit trail on and a masking policy, so that role checks, refusals, masked views
and audit records are all compared; requests good and bad: wrong or missing keys, the viewer
role, unknown ids, odd ids, HEAD, a trailing slash, query strings, Idempotency-Key, content
types, bodies that do not parse or validate.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from audit_helpers import audited
from orchestrion.api import create_app
from orchestrion.api.direct_route import _Plan
from orchestrion.engine.facade import Engine
from orchestrion.settings import load_settings
from orchestrion.store.audit import AuditFilter

ADMIN, OPERATOR, VIEWER = "adm-direct-key-1", "op-direct-key-22", "view-direct-key-3"
KEYS = f"{ADMIN}:admin,{OPERATOR}:operator,{VIEWER}:viewer"
TICKET = "X-Change-Ticket"
FLOW = {
    "name": "direct-routes",
    "dag": {
        "nodes": [
            {"id": "input", "handler": "input"},
            {
                "id": "card",
                "handler": "noop",
                "dependencies": ["input"],
                "data_classification": "pii",
                "config": {"value": {"email": "{{ input.email }}"}},
            },
            {"id": "count", "handler": "noop", "config": {"value": "mail ada@example.com"}},
            {"id": "output", "handler": "output", "dependencies": ["card", "count"]},
        ]
    },
}
YAML_FLOW = """\
name: direct-routes-yaml
dag:
  nodes:
    - id: a
      handler: noop
"""


def auth(key: str | None, **headers: str) -> dict[str, str]:
    found = {TICKET: "CHG-1", **headers}
    if key is not None:
        found["Authorization"] = f"Bearer {key}"
    return found


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: str
    audit: list[tuple[Any, ...]]
    direct: list[bool]


@dataclass
class Api:
    """Sends a request both ways and compares what came of it."""

    client: httpx.AsyncClient
    engine: Engine
    monkeypatch: pytest.MonkeyPatch
    seen: int = 0
    taken: list[bool] = field(default_factory=list)

    async def _send(self, method: str, path: str, ids: dict[str, str], **kwargs: Any) -> Answer:
        before = await self.engine.audit.list(AuditFilter(limit=100_000))
        self.taken.clear()
        response = await self.client.request(method, path, **kwargs)
        after = await self.engine.audit.list(AuditFilter(limit=100_000))
        body = response.text
        if response.headers.get("content-type") == "application/json" and body:
            created = json.loads(body)
            if isinstance(created, dict) and isinstance(created.get("execution_id"), str):
                ids.setdefault(created["execution_id"], "<created>")
        records = [
            (r.action, r.actor, r.execution_id, r.node_id, r.outcome, r.details)
            for r in after[len(before) :]
            if r.action.startswith("api.")  # the engine's own records come as it runs
        ]
        return Answer(
            response.status_code,
            [(k, _header(k, v, ids)) for k, v in response.headers.multi_items()],
            _normal(body, ids),
            [_normal(json.dumps(r, sort_keys=True, default=str), ids) for r in records],
            list(self.taken),
        )

    async def both(
        self,
        method: str,
        path: str,
        target: Callable[[], Any] | None = None,
        *,
        direct: bool | None = None,
        **kwargs: Any,
    ) -> Answer:
        """``path`` (``{id}`` filled from ``target()``, a fresh one each way) answered
        directly and by FastAPI; ``direct``: whether the direct answer must be taken."""
        self.seen += 1
        request_id = f"direct-test-{self.seen}"
        headers = {**kwargs.pop("headers", {}), "X-Request-ID": request_id}
        answers = []
        for fastapi_only in (False, True):
            ids: dict[str, str] = {}
            url = path
            if target is not None:
                one = await target()
                ids[one] = "<id>"
                url = path.replace("{id}", one)
            with self.monkeypatch.context() as patch:
                if fastapi_only:
                    patch.setattr(_Plan, "plain", lambda plan, request: False)
                answers.append(await self._send(method, url, ids, headers=headers, **kwargs))
        served, reference = answers
        assert served.status == reference.status, (served, reference)
        assert served.headers == reference.headers
        assert served.body == reference.body
        assert served.audit == reference.audit
        if direct is not None:
            assert any(served.direct) is direct, served.direct
        return served

    async def pending(self, definition: dict[str, Any] | None = None) -> str:
        submitted = await self.client.post(
            "/v1/workflow", json=definition or FLOW, headers=auth(OPERATOR)
        )
        assert submitted.status_code == 201, submitted.text
        return str(submitted.json()["execution_id"])

    async def done(self) -> str:
        execution_id = await self.pending()
        triggered = await self.client.post(
            f"/v1/workflow/trigger/{execution_id}",
            json={"input_params": {"email": "ada@example.com"}},
            headers=auth(OPERATOR),
        )
        assert triggered.status_code == 202, triggered.text
        await self.engine.wait(execution_id, timeout=30)
        return execution_id


_COUNTING = frozenset({"ratelimit-remaining", "ratelimit-reset", "retry-after"})


def _header(name: str, value: str, ids: dict[str, str]) -> str:
    # The rate limit counts each request: the second of a pair has one request less left.
    return "<counted>" if name in _COUNTING else _normal(value, ids)


def _normal(text: str, ids: dict[str, str]) -> str:
    for value, name in ids.items():
        text = text.replace(value, name)
    return text


@pytest.fixture
def spied(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    taken: list[bool] = []
    plain = _Plan.plain

    def spy(plan: _Plan, request: Any) -> bool:
        verdict = plain(plan, request)
        taken.append(verdict)
        return verdict

    monkeypatch.setattr(_Plan, "plain", spy)
    yield taken


@contextlib.asynccontextmanager
async def serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, taken: list[bool]
) -> AsyncIterator[Api]:
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'direct.db'}",
        rate_limit_burst=1_000_000,  # limits on, so their headers are compared; never reached
        rate_limit_unauthenticated_burst=1_000_000,
        shutdown_grace=0,
        api_keys=KEYS,
        required_headers=(TICKET,),
    )
    engine = Engine(settings=settings, governance=audited())
    await engine.start()
    app = create_app(engine, settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 4242))
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                api = Api(client, engine, monkeypatch)
                api.taken = taken
                yield api
    finally:
        await engine.stop(0)


async def test_status_reads_answer_as_fastapi_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spied: list[bool]
) -> None:
    async with serving(tmp_path, monkeypatch, spied) as api:
        done = await api.done()
        pending = await api.pending()
        read = f"/v1/workflows/{done}"
        for key in (ADMIN, OPERATOR, VIEWER):  # each role's view: masked below admin
            answer = await api.both("GET", read, headers=auth(key), direct=True)
            assert answer.status == 200, answer
        viewer = await api.both("GET", read, headers=auth(VIEWER), direct=True)
        assert '"masked"' in viewer.body and "ada@example.com" not in viewer.body
        await api.both("GET", f"/v1/workflows/{pending}", headers=auth(VIEWER), direct=True)
        for path in (
            "/v1/workflows/no-such-execution",
            "/v1/workflows/%20spaced%20",
            "/v1/workflows/caf%C3%A9",
            "/v1/workflows/" + "x" * 4000,
            "/v1/workflows/a%2Fb",
            "/v1/workflows/..%2F..",
        ):
            answer = await api.both("GET", path, headers=auth(VIEWER))
            assert answer.status in (400, 404), answer
        # The gate answers these before any route: the same either way.
        for headers in (auth(None), auth("not-a-key"), {"Authorization": "Basic eDp5"}):
            answer = await api.both("GET", read, headers=headers, direct=False)
            assert answer.status == 401, answer
        # Query strings go to FastAPI; so does every other shape of the path.
        for query in (
            "include_outputs=false",
            "include_outputs=true",
            "include_outputs=maybe",
            "include_outputs=",
            "other=1",
            "include_outputs=0&include_outputs=1",
        ):
            await api.both("GET", f"{read}?{query}", headers=auth(VIEWER), direct=False)
        for method, path in (
            ("HEAD", read),
            ("GET", read + "/"),
            ("POST", read),
            ("GET", "/v1/workflows/"),
            ("GET", read.upper()),
        ):
            await api.both(method, path, headers=auth(VIEWER))
        # Headers the route does not read change nothing; an Idempotency-Key it does not take.
        await api.both(
            "GET", read, headers=auth(VIEWER, **{"Idempotency-Key": "k1", "Cookie": "a=b"})
        )


async def test_submits_answer_as_fastapi_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spied: list[bool]
) -> None:
    async with serving(tmp_path, monkeypatch, spied) as api:
        await api.pending()  # the definition is stored: both ways submit a stored one
        created = await api.both(
            "POST", "/v1/workflow", json=FLOW, headers=auth(OPERATOR), direct=True
        )
        assert created.status == 201 and "<created>" in created.body, created
        assert created.audit, "a submit leaves an audit record"
        await api.both("POST", "/v1/workflow", json=FLOW, headers=auth(ADMIN), direct=True)
        yaml = {"Content-Type": "application/yaml"}
        await api.both("POST", "/v1/workflow", content=YAML_FLOW, headers=auth(OPERATOR, **yaml))
        refusals = [
            ({"json": FLOW, "headers": auth(VIEWER)}, 403),
            ({"json": FLOW, "headers": {"Authorization": f"Bearer {OPERATOR}"}}, 400),
            ({"json": {"name": "x"}, "headers": auth(OPERATOR)}, None),
            ({"json": [1, 2], "headers": auth(OPERATOR)}, None),
            (
                {
                    "content": b"{",
                    "headers": auth(OPERATOR, **{"Content-Type": "application/json"}),
                },
                None,
            ),
            ({"content": b"\xff\xfe", "headers": auth(OPERATOR)}, None),
            ({"content": b"", "headers": auth(OPERATOR)}, None),
            (
                {
                    "content": b"name: x",
                    "headers": auth(OPERATOR, **{"Content-Type": "text/plain"}),
                },
                415,
            ),
            ({"json": FLOW, "headers": auth(OPERATOR, **{"Idempotency-Key": "event:x"})}, 422),
            ({"json": FLOW, "headers": auth(OPERATOR, **{"Idempotency-Key": "k" * 300})}, 422),
            ({"json": FLOW, "headers": auth(None)}, 401),
        ]
        for kwargs, status in refusals:
            answer = await api.both("POST", "/v1/workflow", **kwargs)
            assert status is None or answer.status == status, (kwargs, answer)
            assert answer.status >= 400, (kwargs, answer)
        # A query string or an Idempotency-Key: FastAPI's, and the same answer.
        await api.both("POST", "/v1/workflow?x=1", json=FLOW, headers=auth(OPERATOR), direct=False)
        key = {"Idempotency-Key": "same-key-1"}
        first = await api.both(
            "POST", "/v1/workflow", json=FLOW, headers=auth(OPERATOR, **key), direct=False
        )
        assert first.status == 201, first


async def test_triggers_answer_as_fastapi_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spied: list[bool]
) -> None:
    async with serving(tmp_path, monkeypatch, spied) as api:
        trigger = "/v1/workflow/trigger/{id}"
        inputs = {"input_params": {"email": "ada@example.com"}}
        started = await api.both(
            "POST", trigger, api.pending, json=inputs, headers=auth(OPERATOR), direct=True
        )
        assert started.status == 202 and started.audit, started
        # No body at all, and an empty JSON object.
        await api.both("POST", trigger, api.pending, headers=auth(OPERATOR), direct=True)
        await api.both("POST", trigger, api.pending, json={}, headers=auth(OPERATOR), direct=True)
        await api.both(
            "POST",
            trigger,
            api.pending,
            json={"count": {"value": 2}},
            headers=auth(OPERATOR),
            direct=True,
        )
        json_type = {"Content-Type": "application/json"}
        bad_bodies: list[tuple[bytes, dict[str, str]]] = [
            (b'{"input_params": 5}', json_type),
            (b'{"node_overrides": []}', json_type),
            (b'{"count": 3}', json_type),
            (b"[]", json_type),
            (b"null", json_type),
            (b'"text"', json_type),
            (b"{", json_type),
            (b'{"a": 1} trailing', json_type),
            (b"{}", {"Content-Type": "application/json; charset=utf-8"}),
            (b"{}", {"Content-Type": "Application/JSON"}),
            (b"{}", {"Content-Type": "application/merge-patch+json"}),
            (b"{}", {}),
            (b"input_params: {}", {"Content-Type": "application/yaml"}),
            (b"{}", {"Content-Type": "text/plain"}),
        ]
        for body, headers in bad_bodies:
            for key in (OPERATOR, VIEWER, None):
                await api.both(
                    "POST", trigger, api.pending, content=body, headers=auth(key, **headers)
                )
        for key in (VIEWER, None, "wrong-key-0000000"):
            await api.both("POST", trigger, api.pending, json=inputs, headers=auth(key))
        await api.both(
            "POST",
            trigger,
            api.pending,
            json=inputs,
            headers={"Authorization": f"Bearer {OPERATOR}"},
        )
        # Unknown, odd and already started executions.
        done = await api.done()
        for path in (
            f"/v1/workflow/trigger/{done}",
            "/v1/workflow/trigger/no-such-execution",
            "/v1/workflow/trigger/caf%C3%A9",
            "/v1/workflow/trigger/" + "y" * 3000,
        ):
            answer = await api.both("POST", path, json=inputs, headers=auth(OPERATOR))
            assert answer.status in (404, 409), answer
        # Idempotency-Key and query strings are FastAPI's.
        for headers in ({"Idempotency-Key": "trigger-key-1"}, {"Idempotency-Key": "child:x"}):
            await api.both(
                "POST",
                trigger,
                api.pending,
                json=inputs,
                headers=auth(OPERATOR, **headers),
                direct=False,
            )
        await api.both(
            "POST",
            trigger + "?dry=1",
            api.pending,
            json=inputs,
            headers=auth(OPERATOR),
            direct=False,
        )


async def test_a_session_signed_in_browser_meets_the_same_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spied: list[bool]
) -> None:
    async with serving(tmp_path, monkeypatch, spied) as api:
        done = await api.done()
        signed_in = await api.client.post("/v1/session", headers=auth(OPERATOR))
        assert signed_in.status_code == 201, signed_in.text
        token = signed_in.json()["csrf_token"]
        cookie = signed_in.headers["set-cookie"].split(";", 1)[0]
        api.client.cookies.clear()  # sent by hand below, the same both ways
        session = {"Cookie": cookie, "Sec-Fetch-Site": "same-origin", TICKET: "CHG-2"}
        answer = await api.both("GET", f"/v1/workflows/{done}", headers=session, direct=True)
        assert answer.status == 200, answer
        trigger = "/v1/workflow/trigger/{id}"
        csrf = {**session, "X-CSRF-Token": token}
        started = await api.both("POST", trigger, api.pending, json={}, headers=csrf, direct=True)
        assert started.status == 202, started
        # Without the CSRF token, or with another's: refused by the gate, either way.
        for headers in (session, {**session, "X-CSRF-Token": token[:-2] + "xx"}):
            refused = await api.both("POST", trigger, api.pending, json={}, headers=headers)
            assert refused.status == 403, refused
        cross = {**csrf, "Sec-Fetch-Site": "cross-site"}
        refused = await api.both("POST", "/v1/workflow", json=FLOW, headers=cross)
        assert refused.status == 403, refused
        expired = {**csrf, "Cookie": cookie[:-4] + "AAAA"}
        refused = await api.both("GET", f"/v1/workflows/{done}", headers=expired)
        assert refused.status == 401, refused
