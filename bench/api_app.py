"""The API application's own CPU per request, in process: no server, no sockets, no client.

    .venv/bin/python bench/api_app.py                       # status, submit + trigger
    .venv/bin/python bench/api_app.py --only status --profile /tmp/status.prof
    PYTHONPATH=<other tree>/src .venv/bin/python bench/api_app.py   # another tree
    .venv/bin/python bench/api_app.py --steady 100          # for bench/api_instructions.py

The application ``orchestrion serve`` serves (``create_app``, the dashboard mounted, the Host
allow list of a server bound to 127.0.0.1), set up as ``bench/api.py`` sets up its server: a
fresh SQLite file, the default rate limits, 16 API keys (operator). Requests are ASGI calls
made here, as uvicorn makes them, through every middleware:

    status   GET /v1/workflows/{id} of a completed execution, with key i of 16 in turn
    submit   POST /v1/workflow (the 3-node definition of bench/api.py, JSON), then
             POST /v1/workflow/trigger/{id}: one operation, two requests

Per operation: this process's CPU time (``time.process_time``) over ``--count`` operations
after a warm-up, the least of ``--passes`` passes. A submit + trigger's figure includes
running the execution (the engine runs in this process, as it does in ``serve``): the bench
waits for every execution it triggered before it stops the clock. What uvicorn, the socket
and the event loop's I/O cost a request comes on top (see bench/api.py).

``--steady N`` only runs N submit + trigger operations after 20 more, one at a time, each
awaited until the engine has committed its end (without reading the store back), and times
nothing: the same work whatever the machine does meanwhile, for counting instructions.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.api import WORKFLOW

Headers = list[tuple[bytes, bytes]]


class Client:
    """ASGI calls into one application, as a server makes them."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def call(
        self, method: str, path: str, headers: Headers, body: bytes = b"", query: bytes = b""
    ) -> tuple[int, Headers, bytes]:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "server": ("127.0.0.1", 8000),
            "client": ("127.0.0.1", 50000),
            "scheme": "http",
            "method": method,
            "root_path": "",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query,
            # As a client over HTTP sends them (wrk, httpx): a body comes with its length.
            "headers": [(b"host", b"127.0.0.1:8000"), *headers, *_length(body)],
            "state": {},
        }
        sent = False
        finished = asyncio.Event()

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await finished.wait()
            return {"type": "http.disconnect"}

        status, out_headers, chunks = 0, [], []

        async def send(message: dict[str, Any]) -> None:
            nonlocal status, out_headers
            if message["type"] == "http.response.start":
                status, out_headers = message["status"], list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    finished.set()

        await self.app(scope, receive, send)
        return status, out_headers, b"".join(chunks)


def _length(body: bytes) -> Headers:
    return [(b"content-length", str(len(body)).encode())] if body else []


def _settings(folder: Path, keys: list[str]) -> Any:
    from orchestrion.settings import load_settings

    return load_settings(
        database_url=f"sqlite:///{folder / 'bench.db'}",
        api_keys={key: "operator" for key in keys},
        log_level="WARNING",
    )


async def _measure(step: Any, count: int, passes: int, profile: Path | None) -> float:
    for _ in range(max(1, count // 10)):
        await step(0)
    best = float("inf")
    profiler = cProfile.Profile() if profile is not None else None
    for _ in range(passes):
        if profiler is not None:
            profiler.enable()
        began = time.process_time()
        for i in range(count):
            await step(i)
        best = min(best, (time.process_time() - began) / count)
        if profiler is not None:
            profiler.disable()
    if profiler is not None and profile is not None:
        profiler.dump_stats(str(profile))
    return best


async def run(
    only: list[str], count: int, passes: int, profile: Path | None, steady: int | None = None
) -> dict[str, float]:
    from orchestrion.api.app import api_context, create_app
    from orchestrion.api.browser_guard import HostAllowList
    from orchestrion.observability.logging_setup import configure_logging
    from orchestrion.web import mount

    folder = Path(tempfile.mkdtemp(prefix="orchestrion-api-app-"))
    keys = [f"bench-key-{i:03d}-{uuid.uuid4().hex[:12]}" for i in range(16)]
    settings = _settings(folder, keys)
    app = create_app(settings=settings)
    ctx = api_context(app)
    ctx.hosts = HostAllowList.of(settings.allowed_hosts, "127.0.0.1")
    if settings.dashboard:
        mount(app)
    configure_logging("json", settings.log_level, masker=ctx.engine.governance.masker)
    client = Client(app)
    auth = [[(b"authorization", f"Bearer {key}".encode())] for key in keys]
    json_type = [(b"content-type", b"application/json")]
    definition = json.dumps(WORKFLOW).encode()
    trigger_body = json.dumps({"input_params": {"n": 1}}).encode()
    triggered: list[str] = []

    async def submit(i: int) -> None:
        headers = auth[i % 16] + json_type
        status, _, body = await client.call("POST", "/v1/workflow", headers, definition)
        assert status == 201, (status, body)
        execution_id = json.loads(body)["execution_id"]
        path = f"/v1/workflow/trigger/{execution_id}"
        status, _, body = await client.call("POST", path, headers, trigger_body)
        assert status == 202, (status, body)
        triggered.append(execution_id)

    results: dict[str, float] = {}
    if steady is not None:
        live = ctx.engine._loop.live  # an execution leaves it once its end is committed
        async with app.router.lifespan_context(app):
            for i in range(_STEADY_WARM_UP + steady):
                await submit(i)
                while triggered[-1] in live:
                    await asyncio.sleep(0)
            await ctx.engine.wait(triggered[-1], timeout=60)
        return results
    async with app.router.lifespan_context(app):
        await submit(0)
        target = triggered[0]
        await ctx.engine.wait(target, timeout=60)
        read = f"/v1/workflows/{target}"

        async def status(i: int) -> None:
            code, _, body = await client.call("GET", read, auth[i % 16])
            assert code == 200, (code, body)

        async def submit_and_finish(i: int) -> None:
            await submit(i)

        if "status" in only:
            results["status"] = await _measure(status, count, passes, profile)
        if "submit" in only:

            async def settled(i: int) -> None:
                await submit_and_finish(i)
                if len(triggered) >= 64 or i == count - 1:
                    for execution_id in triggered:
                        await ctx.engine.wait(execution_id, timeout=60)
                    triggered.clear()

            results["submit"] = await _measure(
                settled, max(1, count // 4), passes, None if "status" in only else profile
            )
    return results


_STEADY_WARM_UP = 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="status,submit", help="comma-separated scenarios")
    parser.add_argument("--count", type=int, default=2000, help="status reads (submits: 1/4)")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--profile", type=Path, help="write a cProfile of the passes here")
    parser.add_argument(
        "--steady",
        type=int,
        metavar="N",
        help="only run N submit + trigger operations (after 20), one at a time, each awaited"
        " to its end without reading the store; no clock (bench/api_instructions.py)",
    )
    args = parser.parse_args()
    only = args.only.split(",")
    results = asyncio.run(run(only, args.count, args.passes, args.profile, args.steady))
    for name, seconds in results.items():
        label = "submit + trigger" if name == "submit" else "status"
        print(f"{label}: {seconds * 1e6:.0f} us CPU per operation")


if __name__ == "__main__":
    main()
