"""REST API benchmark: requests per second and latency of a real ``orchestrion serve`` process.

    .venv/bin/python bench/api.py                         # 16 clients, 5 s per scenario
    .venv/bin/python bench/api.py --clients 64 --seconds 10 --only status

A uvicorn server is started in a subprocess on a free loopback port with a fresh SQLite file
(rate limiting off) and stopped at the end. For each scenario, N asyncio clients (each an
``orchestrion.client.AsyncClient`` with its own connection) loop for T seconds:
    submit   POST /v1/workflow + POST /v1/workflow/trigger/{id} of a 3-node workflow (one
             operation is both requests; the executions then run on the server)
    status   GET /v1/workflows/{id} of a completed execution
The table gives operations, HTTP requests per second, p50/p99/max latency per operation and
errors. Load is bounded (at most 256 clients, 120 s) and only ever aimed at 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from orchestrion.client import ApiError, AsyncClient

MAX_CLIENTS, MAX_SECONDS = 256, 120.0
WORKFLOW: dict[str, Any] = {
    "name": "bench-api",
    "dag": {
        "nodes": [
            {"id": "input", "handler": "input"},
            {"id": "work", "handler": "noop", "dependencies": ["input"], "config": {"value": 1}},
            {"id": "output", "handler": "output", "dependencies": ["work"]},
        ]
    },
}


@dataclass
class Tally:
    """Latencies (seconds) of successful operations, and errors by kind."""

    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(folder: Path, *, rate_limits: bool = False) -> tuple[subprocess.Popen[bytes], str]:
    """``orchestrion serve`` on a free loopback port; returns once /health answers 200.

    ``rate_limits``: the default limits; otherwise none."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    env["ORCHESTRION_LOG_LEVEL"] = "WARNING"
    if not rate_limits:
        env["ORCHESTRION_RATE_LIMIT_PER_SECOND"] = "0"
    env.pop("ORCHESTRION_API_KEYS", None)
    command = [sys.executable, "-m", "orchestrion.cli.app", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--db", str(folder / "bench.db")]
    log = (folder / "server.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited:\n{(folder / 'server.log').read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise SystemExit("server did not become healthy in 30 s")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


Operation = Callable[[AsyncClient], Awaitable[None]]


async def _worker(url: str, operation: Operation, stop_at: float, tally: Tally) -> None:
    async with AsyncClient(url, timeout=30) as client:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            try:
                await operation(client)
            except (ApiError, TimeoutError) as exc:
                kind = type(exc).__name__
                tally.errors[kind] = tally.errors.get(kind, 0) + 1
                continue
            tally.latencies.append(time.perf_counter() - started)


async def load(url: str, operation: Operation, clients: int, seconds: float) -> Tally:
    """``clients`` concurrent loops of ``operation`` for ``seconds``."""
    tally = Tally()
    stop_at = time.perf_counter() + seconds
    await asyncio.gather(*(_worker(url, operation, stop_at, tally) for _ in range(clients)))
    return tally


async def _submit_trigger(client: AsyncClient) -> None:
    submitted = await client.submit(WORKFLOW)
    await client.trigger(submitted.execution_id, {"n": 1})


async def scenarios(url: str, only: set[str], clients: int, seconds: float) -> list[list[str]]:
    async with AsyncClient(url) as client:
        reference = await client.run(WORKFLOW, timeout=60)  # warm-up and the status target

    async def status(c: AsyncClient) -> None:
        await c.status(reference.execution_id)

    plan: list[tuple[str, Operation, int]] = [
        ("submit", _submit_trigger, 2),
        ("status", status, 1),
    ]
    rows = []
    for name, operation, requests_per_op in plan:
        if only and name not in only:
            continue
        tally = await load(url, operation, clients, seconds)
        rows.append(_row(name, tally, requests_per_op, clients, seconds))
    return rows


def _row(name: str, tally: Tally, per_op: int, clients: int, seconds: float) -> list[str]:
    done = sorted(tally.latencies)
    ops = len(done)
    errors = sum(tally.errors.values())
    if not done:
        return [name, str(clients), "0", "-", "-", "-", "-", "-", str(errors)]
    p99 = done[min(ops - 1, int(ops * 0.99))]
    return [
        name,
        str(clients),
        str(ops),
        f"{ops / seconds:,.0f}",
        f"{ops * per_op / seconds:,.0f}",
        f"{statistics.median(done) * 1000:.1f}",
        f"{p99 * 1000:.1f}",
        f"{done[-1] * 1000:.1f}",
        str(errors) + (f" {tally.errors}" if errors else ""),
    ]


def _table(rows: list[list[str]]) -> str:
    head = ["scenario", "clients", "ops", "ops/s", "req/s", "p50 ms", "p99 ms", "max ms", "errors"]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in [head, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (1-256)")
    parser.add_argument("--seconds", type=float, default=5.0, help="per scenario (max 120)")
    parser.add_argument("--only", default="", help="comma-separated: submit,status")
    args = parser.parse_args()
    clients = max(1, min(args.clients, MAX_CLIENTS))
    seconds = max(0.5, min(args.seconds, MAX_SECONDS))
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    with tempfile.TemporaryDirectory() as tmp:
        process, url = start_server(Path(tmp))
        try:
            rows = asyncio.run(scenarios(url, only, clients, seconds))
        finally:
            stop_server(process)
    print(
        f"orchestrion API on {url} (uvicorn, SQLite WAL), {clients} clients x {seconds:g} s, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs"
    )
    print(_table(rows))


if __name__ == "__main__":
    main()
