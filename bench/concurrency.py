"""Concurrent executions through a real server: N started at the same moment, all must finish.

    .venv/bin/python bench/concurrency.py                        # 200, then 2,000
    .venv/bin/python bench/concurrency.py --executions 200 --workflow diamond

A uvicorn server (``orchestrion serve``, embedded mode, a fresh SQLite file, the default rate
limits: all the calls come from one client address, the API open) is started on a free
loopback port. The workflow is stored once; then N clients, each on its
own connection, start an execution of it at the same moment (``POST
/v1/definitions/{name}/executions``) and the bench polls until every execution is final. The
table gives, per N: starts answered 202 and any other answer by status code, start latency
p50/p99, the time until the last execution was final, executions completed, and the server's
peak RSS. Prefect's local server answered 503 at 20 concurrent flow runs: the check is that
nothing fails at 200 or 2,000.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.api import start_server, stop_server
from bench.workloads import chain, diamond

MAX_EXECUTIONS = 5_000
WORKFLOWS = {"diamond": diamond, "chain10": lambda: chain(10)}
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT", "COMPENSATED"}


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _start(
    client: httpx.AsyncClient, name: str, latencies: list[float], answers: Counter[str]
) -> str | None:
    started = time.perf_counter()
    try:
        response = await client.post(f"/v1/definitions/{name}/executions", json={})
    except httpx.HTTPError as exc:
        answers[type(exc).__name__] += 1
        return None
    latencies.append(time.perf_counter() - started)
    answers[str(response.status_code)] += 1
    if response.status_code != 202:
        return None
    execution_id: str = response.json()["execution_id"]
    return execution_id


async def _until_final(url: str, ids: list[str], deadline: float) -> Counter[str]:
    """Poll (50 requests at a time) until every execution is final; their statuses."""
    statuses: dict[str, str] = {}
    pending = list(ids)
    gate = asyncio.Semaphore(50)
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def status(execution_id: str) -> None:
            async with gate:
                response = await client.get(f"/v1/workflows/{execution_id}")
            if response.status_code == 200:
                statuses[execution_id] = response.json()["status"]

        while pending and time.monotonic() < deadline:
            await asyncio.gather(*(status(i) for i in pending))
            pending = [i for i in pending if statuses.get(i) not in FINAL]
            if pending:
                await asyncio.sleep(0.2)
    return Counter(statuses.get(i, "UNFINISHED") for i in ids)


async def one_round(url: str, pid: int, name: str, executions: int) -> list[str]:
    latencies: list[float] = []
    answers: Counter[str] = Counter()
    barrier = asyncio.Event()

    # Every caller has a connection of its own, as N services would; pools of 50, since an
    # httpx pool scans all its connections for each request (one of 2,000 makes the client,
    # not the server, the bottleneck).
    pools = [
        httpx.AsyncClient(
            base_url=url, timeout=300, verify=False, limits=httpx.Limits(max_connections=50)
        )
        for _ in range((executions + 49) // 50)
    ]

    async def caller(n: int) -> str | None:
        await barrier.wait()
        return await _start(pools[n // 50], name, latencies, answers)

    callers = [asyncio.create_task(caller(n)) for n in range(executions)]
    await asyncio.sleep(0.1)
    began = time.perf_counter()
    barrier.set()  # every caller sends at once
    ids = [i for i in await asyncio.gather(*callers) if i is not None]
    for pool in pools:
        await pool.aclose()
    statuses = await _until_final(url, ids, time.monotonic() + 600)
    took = time.perf_counter() - began
    done = sorted(latencies)
    p99 = done[min(len(done) - 1, int(len(done) * 0.99))] if done else float("nan")
    other = {k: v for k, v in answers.items() if k != "202"}
    return [
        f"{executions:,}",
        f"{answers['202']:,}",
        ", ".join(f"{k}: {v}" for k, v in sorted(other.items())) or "none",
        f"{statistics.median(done) * 1000:.0f}" if done else "-",
        f"{p99 * 1000:.0f}",
        f"{took:.2f}",
        f"{statuses['COMPLETED']:,}",
        f"{_peak_rss_mib(pid):.0f}",
    ]


async def rounds(url: str, pid: int, workflow: str, sizes: list[int]) -> list[list[str]]:
    definition: dict[str, Any] = WORKFLOWS[workflow]()
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        response = await client.post("/v1/workflow", json=definition)
        response.raise_for_status()
    return [await one_round(url, pid, definition["name"], n) for n in sizes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", default="200,2000", help="comma-separated counts")
    parser.add_argument("--workflow", choices=sorted(WORKFLOWS), default="diamond")
    args = parser.parse_args()
    sizes = [max(1, min(int(n), MAX_EXECUTIONS)) for n in args.executions.split(",") if n]
    with tempfile.TemporaryDirectory() as tmp:
        process, url = start_server(Path(tmp), rate_limits=True)
        try:
            rows = asyncio.run(rounds(url, process.pid, args.workflow, sizes))
        finally:
            stop_server(process)
    print(
        f"orchestrion serve on {url} (uvicorn, embedded, SQLite WAL), workflow {args.workflow},"
        f" Python {platform.python_version()}, {os.cpu_count()} CPUs"
    )
    head = ["started at once", "202", "other answers", "p50 ms", "p99 ms", "all final s"]
    head += ["completed", "server peak RSS MiB"]
    print(_table(head, rows))


def _table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = [
        "  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True))
        for row in [head, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
