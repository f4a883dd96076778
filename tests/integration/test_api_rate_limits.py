"""Rate limits and the audit trail against floods, in-process on a real SQLite file.

Callers with a valid key are limited per key, whatever else they send; callers without one
per address, whatever token or X-Client-ID they rotate through; requests refused before
authentication never get an audit record each, only a summary with nothing client-chosen in
it. Scale-out buckets are shared through the real Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from audit_helpers import audited
from orchestrion.api import create_app
from orchestrion.api.app import api_context
from orchestrion.api.refusals import REFUSED_ACTION, REFUSED_ACTOR
from orchestrion.engine.facade import Engine
from orchestrion.governance.runtime import Governance
from orchestrion.settings import load_settings
from orchestrion.store.audit import AuditFilter, AuditRecord
from orchestrion.web import mount as mount_dashboard

ADMIN, OPERATOR, OTHER, VIEWER = "adm-secret-1", "op-secret-2", "op-secret-3", "view-secret-4"
KEYS = f"{ADMIN}:admin,{OPERATOR}:operator,{OTHER}:operator,{VIEWER}:viewer"
FLOW = {"name": "limits", "dag": {"nodes": [{"id": "a", "handler": "noop"}]}}
PEER = "203.0.113.7"


def key_id(key: str) -> str:
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:8]


def bearer(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **headers}


@contextlib.asynccontextmanager
async def serving(
    tmp_path: Path,
    governance: Governance | None = None,
    peer: str = PEER,
    dashboard: bool = False,
    **overrides: Any,
) -> AsyncIterator[tuple[httpx.AsyncClient, Engine]]:
    config: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path / 'api.db'}",
        "shutdown_grace": 0,
        "api_keys": KEYS,
        "rate_limit_per_second": 0.01,  # refills slowly: counts are exact within a test
        "rate_limit_burst": 5,
        "rate_limit_unauthenticated_per_second": 0.01,
        "rate_limit_unauthenticated_burst": 3,
    }
    settings = load_settings(**{**config, **overrides})
    # The engine runs embedded; only the app (and so its limiter) is given the Redis URL.
    embedded = settings.model_copy(update={"redis_url": None})
    engine = Engine(settings=embedded, governance=governance or audited())
    await engine.start()
    app = create_app(engine, settings)
    if dashboard:  # as `orchestrion serve` mounts it
        mount_dashboard(app)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=(peer, 4711))
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                yield client, engine
    finally:
        await engine.stop(0)


async def statuses(
    client: httpx.AsyncClient, n: int, path: str = "/v1/workflows", method: str = "GET", **kw: Any
) -> list[int]:
    return [(await client.request(method, path, **kw)).status_code for _ in range(n)]


async def trail(engine: Engine) -> list[AuditRecord]:
    return list(await engine.audit._store().list_audit(AuditFilter(limit=10_000)))


# ---------------------------------------------------------------- who is counted where


@pytest.mark.parametrize(
    "rotate",
    [
        pytest.param(lambda i: bearer(f"guess-{i}"), id="rotating-bearer-tokens"),
        pytest.param(lambda i: {"X-Client-ID": f"client-{i}"}, id="rotating-client-ids"),
        pytest.param(
            lambda i: bearer(f"guess-{i}", **{"X-Client-ID": f"client-{i}"}), id="rotating-both"
        ),
        pytest.param(lambda i: {}, id="no-auth"),
        pytest.param(lambda i: bearer("wrong"), id="wrong-auth"),
        pytest.param(lambda i: {"Authorization": f"Basic {i}"}, id="other-scheme"),
        pytest.param(lambda i: {"X-Forwarded-For": f"198.51.100.{i}"}, id="rotating-xff"),
    ],
)
async def test_callers_without_a_valid_key_share_their_address_bucket(
    tmp_path: Path, rotate: Any
) -> None:
    async with serving(tmp_path) as (client, _):
        codes = [
            (await client.post("/v1/workflow", json=FLOW, headers=rotate(i))).status_code
            for i in range(10)
        ]
        assert codes == [401] * 3 + [429] * 7
        # The valid keys' buckets were never touched.
        assert await statuses(client, 5, headers=bearer(VIEWER)) == [200] * 5


async def test_a_valid_key_is_limited_by_key_whatever_it_claims(tmp_path: Path) -> None:
    async with serving(tmp_path) as (client, _):
        codes = [
            (
                await client.get(
                    "/v1/workflows",
                    headers=bearer(
                        VIEWER, **{"X-Client-ID": f"c{i}", "X-Forwarded-For": f"10.{i}.0.1"}
                    ),
                )
            ).status_code
            for i in range(8)
        ]
        assert codes == [200] * 5 + [429] * 3
        refused = await client.get("/v1/workflows", headers=bearer(VIEWER))
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["ratelimit-limit"] == "5"
        assert refused.headers["ratelimit-remaining"] == "0"
        assert int(refused.headers["ratelimit-reset"]) >= 1
        problem = refused.json()
        assert problem["status"] == 429 and "rate limit" in problem["detail"]
        # Another key, and the unauthenticated bucket of the same address, are their own.
        assert await statuses(client, 5, headers=bearer(OPERATOR)) == [200] * 5
        assert await statuses(client, 3) == [401] * 3


async def test_allowed_answers_carry_the_rate_limit_headers(tmp_path: Path) -> None:
    async with serving(tmp_path) as (client, _):
        first = await client.get("/v1/workflows", headers=bearer(VIEWER))
        second = await client.get("/v1/workflows", headers=bearer(VIEWER))
        assert first.status_code == second.status_code == 200
        assert (first.headers["ratelimit-remaining"], second.headers["ratelimit-remaining"]) == (
            "4",
            "3",
        )
        assert "retry-after" not in first.headers
        unauthenticated = await client.get("/v1/workflows")
        assert unauthenticated.status_code == 401
        assert unauthenticated.headers["ratelimit-limit"] == "3"
        assert unauthenticated.headers["www-authenticate"].startswith("Bearer")


async def test_health_and_metrics_are_never_limited(tmp_path: Path) -> None:
    async with serving(tmp_path) as (client, _):
        await statuses(client, 5)  # the address's bucket is empty
        for _ in range(10):
            assert (await client.get("/health")).status_code == 200
            assert (await client.get("/metrics")).status_code == 200


async def test_unknown_v1_paths_answer_401_before_404_without_a_key(tmp_path: Path) -> None:
    async with serving(tmp_path, rate_limit_unauthenticated_per_second=0) as (client, _):
        assert (await client.post("/v1/nothing-here", json={})).status_code == 401
        assert (await client.get("/v1/workflows/x/../../admin")).status_code == 401
        known = await client.post("/v1/nothing-here", json={}, headers=bearer(OPERATOR))
        assert known.status_code == 404


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        ((), "198.51.100.1", PEER),  # the header is ignored unless the peer is trusted
        (("203.0.113.0/24",), "198.51.100.1", "198.51.100.1"),
        (("203.0.113.0/24",), "198.51.100.1, 203.0.113.9", "198.51.100.1"),
        (("203.0.113.0/24",), "not-an-address", PEER),
        (("192.0.2.0/24",), "198.51.100.1", PEER),  # this peer is not a listed proxy
    ],
)
async def test_x_forwarded_for_only_from_trusted_proxies(
    tmp_path: Path, proxies: tuple[str, ...], forwarded: str, expected: str
) -> None:
    overrides = {"trusted_proxies": ",".join(proxies)} if proxies else {}
    async with serving(tmp_path, **overrides) as (client, engine):
        response = await client.post(
            "/v1/workflow", json=FLOW, headers=bearer(OPERATOR, **{"X-Forwarded-For": forwarded})
        )
        assert response.status_code == 201
        (record,) = [r for r in await trail(engine) if r.action == "api.submit_workflow"]
        assert record.details["remote"] == expected


async def test_trusted_proxy_clients_get_buckets_of_their_own(tmp_path: Path) -> None:
    async with serving(tmp_path, trusted_proxies="203.0.113.0/24") as (client, _):
        for client_address in ("198.51.100.1", "198.51.100.2"):
            forwarded = {"X-Forwarded-For": client_address}
            assert await statuses(client, 4, headers=forwarded) == [401, 401, 401, 429]


PAGES = [
    "/",
    "/ui",
    "/ui/",
    "/ui/login",
    "/ui/static/app.js",
    "/ui/static/app.css",
    "/docs",
    "/docs/",
]


@pytest.mark.parametrize(
    "credential",
    [
        pytest.param({}, id="nothing"),
        pytest.param({"Cookie": "orchestrion_session=forged.or.ended"}, id="a-dead-session"),
    ],
)
async def test_a_signed_out_browser_loads_pages_beyond_the_tight_limit(
    tmp_path: Path, credential: dict[str, str]
) -> None:
    """Pages and static files of the dashboard and the docs test no key: without one they
    count in a bucket of their own per address, at a key's limit, so a browser that signs
    out and loads the sign-in page again and again never meets the 2/s meant for guessing."""
    async with serving(tmp_path, dashboard=True, rate_limit_burst=8) as (client, _):
        codes = [(await client.get(path, headers=credential)).status_code for path in PAGES]
        assert 429 not in codes and 401 not in codes, codes
        # The key guessers' bucket of the address was not touched by the pages.
        assert await statuses(client, 4) == [401, 401, 401, 429]
        assert (await client.get("/ui/login", headers=credential)).status_code == 429  # the 9th
        assert (await client.get("/ui/login", headers=bearer(VIEWER))).status_code == 200


async def test_a_page_with_a_wrong_token_is_in_the_key_guessers_bucket(tmp_path: Path) -> None:
    """A page request that names a key which matches none is limited as every other key
    guess: its rate-limit headers must not become a fast oracle of which tokens are keys."""
    async with serving(tmp_path, dashboard=True) as (client, _):
        guesses = [
            (await client.get("/ui/login", headers=bearer(f"guess-{i}"))).status_code
            for i in range(4)
        ]
        assert guesses == [200, 200, 200, 429]
        guessed = await client.get("/ui/", headers=bearer("guess-x"))
        assert guessed.status_code == 429 and guessed.headers["ratelimit-limit"] == "3"
        assert (await client.get("/ui/login")).status_code == 200  # no token: the pages' bucket


# ---------------------------------------------------------------- the audit trail


async def test_an_unauthenticated_flood_writes_one_summary_and_no_chosen_actor(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path) as (client, engine):
        before = len(await trail(engine))
        for i in range(200):
            headers = bearer(
                f"attacker-{i}",
                **{"X-Client-ID": f"evil-{i}", "User-Agent": f"agent-{i}", "X-Request-Source": "x"},
            )
            await client.post(f"/v1/workflow/evil-{i}", json=FLOW, headers=headers)
            await client.delete(f"/v1/workflows/evil-{i}", headers=headers)
        assert len(await trail(engine)) == before  # nothing per request
        await api_context(client._transport.app).refusals.flush(engine.audit)  # type: ignore[attr-defined]
        records = (await trail(engine))[before:]
        (summary,) = records
        assert (summary.action, summary.actor, summary.outcome) == (
            REFUSED_ACTION,
            REFUSED_ACTOR,
            "refused",
        )
        details = summary.details
        assert details["requests"] == 400
        assert details["statuses"] == {"401": 3, "429": 397}
        assert details["addresses"] == [
            {"remote": PEER, "requests": 400, "statuses": {"401": 3, "429": 397}}
        ]
        text = json.dumps(details)
        for chosen in ("attacker-", "evil-", "agent-"):
            assert chosen not in text
        assert await engine.audit.verify() is not None


async def test_failed_authentications_of_reads_are_counted_too(tmp_path: Path) -> None:
    async with serving(tmp_path) as (client, engine):
        before = len(await trail(engine))
        await statuses(client, 2, headers=bearer("nope"))
        await client.get("/health/compliance")  # a role dependency's 401, outside /v1
        app = client._transport.app  # type: ignore[attr-defined]
        assert api_context(app).refusals.pending == 3
        assert len(await trail(engine)) == before


async def test_a_valid_key_is_recorded_per_call_and_a_forbidden_call_too(tmp_path: Path) -> None:
    async with serving(tmp_path) as (client, engine):
        before = len(await trail(engine))
        headers = bearer(VIEWER, **{"X-Client-ID": "ci\x01bot" + "x" * 500})
        assert (await client.post("/v1/workflow", json=FLOW, headers=headers)).status_code == 403
        (record,) = (await trail(engine))[before:]
        assert (record.actor, record.outcome) == (key_id(VIEWER), "403")
        assert record.details["client_id"] == "ci?bot" + "x" * 122  # printable, 128 at most
        assert record.details["remote"] == PEER
        # A key's refused flood (429) is not recorded.
        await statuses(client, 10, headers=bearer(VIEWER))
        assert len(await trail(engine)) == before + 1


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        (
            "POST",
            "/v1/workflow",
            {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
            422,
        ),
        ("POST", "/v1/workflow", {"content": b"x", "headers": {"Content-Type": "text/x"}}, 415),
        ("POST", "/v1/somewhere", {"json": {}}, 404),
        ("PUT", "/v1/workflow", {"json": {}}, 405),
    ],
)
async def test_an_open_api_summarises_refused_calls(
    tmp_path: Path, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    async with serving(tmp_path, api_keys="", rate_limit_per_second=0) as (client, engine):
        before = len(await trail(engine))
        for _ in range(20):
            response = await client.request(method, path, **kwargs)
            assert response.status_code == status, response.text
        assert len(await trail(engine)) == before
        app = client._transport.app  # type: ignore[attr-defined]
        assert api_context(app).refusals.details()["statuses"] == {str(status): 20}
        # An action of the open API is recorded, as "anonymous" whatever token is sent.
        done = await client.post("/v1/workflow", json=FLOW, headers=bearer("made-up"))
        assert done.status_code == 201
        (record,) = (await trail(engine))[before:]
        assert record.actor == "anonymous"


async def test_missing_required_headers_of_an_unauthenticated_call_are_not_reached(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path, required_headers="X-Request-Source") as (client, engine):
        before = len(await trail(engine))
        assert (await client.post("/v1/workflow", json=FLOW)).status_code == 401
        with_key = await client.post("/v1/workflow", json=FLOW, headers=bearer(OPERATOR))
        assert with_key.status_code == 400
        (record,) = (await trail(engine))[before:]
        assert (record.actor, record.outcome) == (key_id(OPERATOR), "400")


async def test_a_chunked_body_without_a_key_is_refused_before_it_is_read(tmp_path: Path) -> None:
    read = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal read
        for _ in range(64):
            read += 1
            yield b"x" * 65536

    async with serving(tmp_path, max_body_bytes=1024) as (client, engine):
        before = len(await trail(engine))
        response = await client.post("/v1/workflow", content=body())
        assert response.status_code == 401
        assert len(await trail(engine)) == before


# ---------------------------------------------------------------- scale-out: Redis


async def test_replicas_share_buckets_through_redis(
    tmp_path: Path, redis_server: str, redis_prefix: str
) -> None:
    from redis.asyncio import Redis

    shared = {"redis_url": redis_server, "redis_prefix": redis_prefix}
    async with (
        serving(tmp_path / "a", **shared) as (one, _),
        serving(tmp_path / "b", **shared) as (two, _),
    ):
        for client in (one, two):  # the lifespan made a client; the gate uses it
            assert api_context(client._transport.app).redis is not None  # type: ignore[attr-defined]
        assert await statuses(one, 3, headers=bearer(VIEWER)) == [200] * 3
        assert await statuses(two, 3, headers=bearer(VIEWER)) == [200, 200, 429]
        assert await statuses(one, 1, headers=bearer(VIEWER)) == [429]
        assert await statuses(one, 2) == [401, 401]
        assert await statuses(two, 2) == [401, 429]
    redis = Redis.from_url(redis_server)
    try:
        keys = [k.decode() async for k in redis.scan_iter(f"{redis_prefix}:ratelimit:*")]
        assert len(keys) == 2
        assert [await redis.pttl(k) > 0 for k in keys] == [True, True]  # they expire
        assert VIEWER not in "".join(keys)  # never the key itself
    finally:
        await redis.aclose()


async def test_a_redis_outage_falls_back_to_local_buckets(tmp_path: Path) -> None:
    # Nothing listens on port 1: every Redis call fails at once.
    async with serving(tmp_path, redis_url="redis://127.0.0.1:1/0") as (client, _):
        assert await statuses(client, 7, headers=bearer(VIEWER)) == [200] * 5 + [429] * 2
        assert await statuses(client, 4) == [401] * 3 + [429]


async def test_the_summary_is_written_every_window_while_the_server_runs(tmp_path: Path) -> None:
    async with serving(tmp_path, refusal_summary_seconds=1) as (client, engine):
        await statuses(client, 5, method="POST", path="/v1/workflow", json=FLOW)
        counted: dict[str, int] = {}
        deadline = asyncio.get_running_loop().time() + 20
        while sum(counted.values()) < 5:  # one window, or two if the requests straddled one
            assert asyncio.get_running_loop().time() < deadline, f"summaries: {counted}"
            await asyncio.sleep(0.1)
            counted = {}
            for record in await trail(engine):
                if record.action == REFUSED_ACTION:
                    for status, n in record.details["statuses"].items():
                        counted[status] = counted.get(status, 0) + n
        assert counted == {"401": 3, "429": 2}
