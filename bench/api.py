"""REST API load: executions submitted and triggered, and status reads, per second.

    .venv/bin/python bench/api.py                          # embedded, 16 clients, 10 s each
    .venv/bin/python bench/api.py --mode scaleout          # two API replicas, PostgreSQL + Redis
    .venv/bin/python bench/api.py --mode both --rounds 3   # both, interleaved, 3 rounds
    .venv/bin/python bench/api.py --clients 1 --seconds 5 --only status
    .venv/bin/python bench/api.py --api-workers 1,2 --rounds 2 --generator wrk  # serve --workers

The servers are real processes, configured as a user configures them (``ORCHESTRION_``
variables), on free loopback ports, with the default rate limits and 16 API keys (operator),
one per client, as 16 client services would have:

- embedded: one ``orchestrion serve`` on a fresh SQLite file (its engine runs the executions);
  with ``--api-workers N`` (a list: ``1,2`` alternates them within each round), ``orchestrion
  serve --workers N``: N server processes on the port, each with its engine on that file (the
  mode is then named ``embedded xN``, its CPU that of the whole process tree);
- scaleout: a fresh PostgreSQL database and Redis prefix, one ``orchestrion orchestrator``
  (it runs the executions: their nodes are built-ins, run in its turn), one ``orchestrion
  worker`` (idle here, but a deployment has one) and two ``orchestrion serve`` replicas (API
  only); client i talks to replica i mod 2.

N clients (asyncio, one ``httpx.AsyncClient`` and one connection each, all in this process)
loop for T seconds on one scenario:

    submit   POST /v1/workflow (a 3-node definition, JSON) then POST
             /v1/workflow/trigger/{execution_id}: one operation, two requests
    status   GET /v1/workflows/{execution_id} of a completed execution

With ``--generator wrk`` (Debian's ``wrk``, C: a tenth of the Python clients' CPU per request
or less) both scenarios are driven by wrk instead: 16 threads with one connection and one API
key each, one wrk per replica (bench/wrk_keys.lua for status; bench/wrk_submit.lua for submit,
each connection triggering the execution its submit created); latencies are then per
request, as wrk reports them (its 50th and 99th percentiles and its maximum).

Per scenario: operations and requests per second, latency of an operation (p50, p99, max),
answers other than 2xx by status, and the CPU seconds each process spent per 1,000
operations (the API servers, the orchestrator, PostgreSQL and Redis backends, this load
generator), read from /proc, with how busy the machine's cores were: on a small machine the
load generator takes CPU from the servers, so the CPU per operation is the figure that
carries over. After the submit scenario every execution it triggered must complete (the
bench waits for it and says how long that took). With ``--rounds`` the modes alternate
within each round; the table gives every round. Load only ever goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scaleout import (
    admin,
    cpu_seconds,
    delete_prefix,
    machine_jiffies,
    service_cpu,
    with_database,
)
from bench.serve_tree import tree_cpu, wait_all_serving

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
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT", "COMPENSATED"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    env = {k: v for k, v in env.items() if not k.startswith("ORCHESTRION_")}
    env["ORCHESTRION_LOG_LEVEL"] = "WARNING"
    return env


def _command() -> list[str]:
    script = Path(sys.executable).parent / "orchestrion"
    return [str(script)] if script.exists() else [sys.executable, "-m", "orchestrion.cli.app"]


def _wait_healthy(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 180  # a busy machine: migrating PostgreSQL takes a while
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise SystemExit(f"server did not become healthy in 180 s:\n{log.read_text()[-3000:]}")


def _serve(folder: Path, env: dict[str, str], name: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [*_command(), "serve", "--host", "127.0.0.1", "--port", str(port)]
    log = folder / f"{name}.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
    _wait_healthy(process, url, log)
    return process, url


def start_server(
    folder: Path, *, rate_limits: bool = False, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """``orchestrion serve`` (embedded, ``folder``/bench.db) on a free loopback port; returns
    once /health answers 200. ``rate_limits``: the default limits; otherwise none."""
    environment = _base_env()
    environment["ORCHESTRION_DATABASE_URL"] = f"sqlite:///{folder / 'bench.db'}"
    if not rate_limits:
        environment["ORCHESTRION_RATE_LIMIT_PER_SECOND"] = "0"
    environment.update(env or {})
    return _serve(folder, environment, "server")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ---------------------------------------------------------------------------- deployments


@dataclass
class Deployment:
    """The processes of one mode, the URLs clients use, and how to read their CPU."""

    mode: str
    urls: list[str]
    processes: dict[str, list[subprocess.Popen[bytes]]]
    database: str | None = None  # PostgreSQL database name (scale-out)
    cleanup: list[Any] = field(default_factory=list)
    sqlite: Path | None = None  # the SQLite file (embedded)
    postgres: str | None = None  # the PostgreSQL URL of ``database`` (scale-out)

    async def unfinished(self, ids: list[str]) -> int:
        """How many of ``ids`` are not final yet, read from the database itself: waiting
        for them costs the servers nothing."""
        final = ["completed", "failed", "cancelled"]  # as stored (the API spells them upper)
        found: set[str] = set()
        if self.sqlite is not None:
            conn = sqlite3.connect(f"file:{self.sqlite}?mode=ro", uri=True, timeout=30)
            try:
                marks = ", ".join("?" * len(final))
                found = {
                    row[0]
                    for row in conn.execute(
                        f"SELECT id FROM executions WHERE status IN ({marks})", final
                    )
                }
            finally:
                conn.close()
        elif self.postgres is not None:
            import asyncpg

            pg = await asyncpg.connect(self.postgres, timeout=5)
            try:
                rows = await pg.fetch(
                    "SELECT id FROM executions WHERE status = ANY($1::text[])", final
                )
                found = {row[0] for row in rows}
            finally:
                await pg.close()
        return sum(1 for i in ids if i not in found)

    def cpu(self) -> dict[str, float]:
        found = {
            role: sum(tree_cpu(p.pid) for p in procs) for role, procs in self.processes.items()
        }
        if self.database is not None:
            services = service_cpu(self.database)
            found["postgres"] = services["postgres"]
            found["redis"] = services["redis-server"]
        return found

    def stop(self) -> None:
        for procs in self.processes.values():
            for process in procs:
                process.terminate()
        for procs in self.processes.values():
            for process in procs:
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        for step in self.cleanup:
            with contextlib.suppress(Exception):
                step()


def _keys(clients: int) -> list[str]:
    return [f"bench-key-{i:03d}-{uuid.uuid4().hex[:12]}" for i in range(clients)]


def embedded(folder: Path, keys: list[str], workers: int = 1) -> Deployment:
    env = {"ORCHESTRION_API_KEYS": ",".join(f"{k}:operator" for k in keys)}
    if workers > 1:
        env["ORCHESTRION_API_WORKERS"] = str(workers)
    process, url = start_server(folder, rate_limits=True, env=env)
    mode = "embedded" if workers == 1 else f"embedded x{workers}"
    if workers > 1:
        wait_all_serving(process.pid, int(url.rsplit(":", 1)[1]), workers)
    return Deployment(mode, [url], {"api": [process]}, sqlite=folder / "bench.db")


def scaleout(folder: Path, keys: list[str], postgres: str, redis: str) -> Deployment:
    tag = uuid.uuid4().hex[:10]
    database, prefix = f"orchestrion_api_{tag}", f"orchestrion-api-{tag}"
    asyncio.run(admin(postgres, f'CREATE DATABASE "{database}"'))
    env = _base_env()
    env.update(
        {
            "ORCHESTRION_DATABASE_URL": with_database(postgres, database),
            "ORCHESTRION_REDIS_URL": redis,
            "ORCHESTRION_REDIS_PREFIX": prefix,
            "ORCHESTRION_API_KEYS": ",".join(f"{k}:operator" for k in keys),
        }
    )
    deployment = Deployment(
        "scaleout",
        [],
        {"api": [], "orchestrator": [], "worker": []},
        database,
        postgres=with_database(postgres, database),
    )
    deployment.cleanup.append(
        lambda: asyncio.run(admin(postgres, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    )
    deployment.cleanup.append(lambda: asyncio.run(delete_prefix(redis, prefix)))
    try:
        # The orchestrator and a worker first: the orchestrator migrates the fresh database,
        # and a replica's /health answers 200 only once both are alive.
        for role in ("orchestrator", "worker"):
            with (folder / f"{role}.log").open("wb") as log:
                deployment.processes[role].append(
                    subprocess.Popen(
                        [*_command(), role], stdout=log, stderr=subprocess.STDOUT, env=env
                    )
                )
        for n in range(2):
            process, url = _serve(folder, env, f"api-{n}")
            deployment.processes["api"].append(process)
            deployment.urls.append(url)
    except BaseException:
        deployment.stop()
        raise
    return deployment


# ---------------------------------------------------------------------------- load


@dataclass
class Tally:
    """Latencies (seconds) of successful operations, other answers by kind, ids triggered."""

    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    triggered: list[tuple[str, str]] = field(default_factory=list)  # (url, execution id)


class Failed(Exception):
    """An answer other than 2xx (its status) or a transport error (its class)."""


def _ok(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 300:
        raise Failed(str(response.status_code))
    return response


async def _submit(client: httpx.AsyncClient, tally: Tally, body: bytes) -> None:
    headers = {"Content-Type": "application/json"}
    submitted = _ok(await client.post("/v1/workflow", content=body, headers=headers))
    execution_id = json.loads(submitted.content)["execution_id"]
    _ok(await client.post(f"/v1/workflow/trigger/{execution_id}", json={"input_params": {"n": 1}}))
    tally.triggered.append((str(client.base_url), execution_id))


async def _status(client: httpx.AsyncClient, execution_id: str) -> None:
    _ok(await client.get(f"/v1/workflows/{execution_id}"))


async def _client(
    url: str, key: str, scenario: str, target: str, stop_at: float, tally: Tally
) -> None:
    body = json.dumps(WORKFLOW).encode()
    async with httpx.AsyncClient(
        base_url=url,
        timeout=30,
        headers={"Authorization": f"Bearer {key}"},
        limits=httpx.Limits(max_connections=1),
    ) as client:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            try:
                if scenario == "submit":
                    await _submit(client, tally, body)
                else:
                    await _status(client, target)
            except (Failed, httpx.HTTPError) as exc:
                tally.errors[str(exc) if isinstance(exc, Failed) else type(exc).__name__] += 1
                continue
            tally.latencies.append(time.perf_counter() - started)


async def _reference(url: str, key: str) -> str:
    """A completed execution, the target of the status reads (and a warm-up)."""
    async with httpx.AsyncClient(
        base_url=url, timeout=30, headers={"Authorization": f"Bearer {key}"}
    ) as client:
        submitted = _ok(await client.post("/v1/workflow", json=WORKFLOW)).json()
        execution_id: str = submitted["execution_id"]
        _ok(
            await client.post(
                f"/v1/workflow/trigger/{execution_id}", json={"input_params": {"n": 1}}
            )
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = _ok(await client.get(f"/v1/workflows/{execution_id}")).json()["status"]
            if status in FINAL:
                return execution_id
            await asyncio.sleep(0.05)
    raise SystemExit("the warm-up execution did not finish in 60 s")


async def _all_final(triggered: list[tuple[str, str]], key: str, timeout: float) -> Counter[str]:
    """Wait until every triggered execution is final (reads spread over 16 connections)."""
    statuses: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    clients = {
        url: httpx.AsyncClient(base_url=url, timeout=30, headers={"Authorization": f"Bearer {key}"})
        for url in {u for u, _ in triggered}
    }
    gate = asyncio.Semaphore(16)

    async def read(url: str, execution_id: str) -> None:
        async with gate:
            try:
                response = await clients[url].get(f"/v1/workflows/{execution_id}")
            except httpx.TransportError:
                return  # a kept-alive connection the server had just closed: next pass
        if response.status_code == 200:
            statuses[execution_id] = response.json()["status"]

    try:
        pending = list(triggered)
        while pending and time.monotonic() < deadline:
            await asyncio.gather(*(read(u, i) for u, i in pending))
            pending = [(u, i) for u, i in pending if statuses.get(i) not in FINAL]
            if pending:
                await asyncio.sleep(0.2)
    finally:
        for client in clients.values():
            await client.aclose()
    return Counter(statuses.get(i, "UNFINISHED") for _, i in triggered)


def _percentile(done: list[float], q: float) -> float:
    return done[min(len(done) - 1, int(len(done) * q))]


async def run_scenario(
    deployment: Deployment, keys: list[str], scenario: str, clients: int, seconds: float
) -> dict[str, Any]:
    target = await _reference(deployment.urls[0], keys[0])
    tally = Tally()
    cpu0, (busy0, total0) = deployment.cpu(), machine_jiffies()
    own0 = cpu_seconds(os.getpid())
    began = time.perf_counter()
    stop_at = began + seconds
    await asyncio.gather(
        *(
            _client(
                deployment.urls[i % len(deployment.urls)], keys[i], scenario, target, stop_at, tally
            )
            for i in range(clients)
        )
    )
    wall = time.perf_counter() - began
    cpu1, (busy1, total1) = deployment.cpu(), machine_jiffies()
    own = cpu_seconds(os.getpid()) - own0
    done = sorted(tally.latencies)
    ops = len(done)
    per_op = 2 if scenario == "submit" else 1
    row: dict[str, Any] = {
        "mode": deployment.mode,
        "scenario": scenario,
        "clients": clients,
        "seconds": round(wall, 2),
        "ops": ops,
        "ops_s": ops / wall,
        "req_s": ops * per_op / wall,
        "p50_ms": statistics.median(done) * 1000 if done else None,
        "p99_ms": _percentile(done, 0.99) * 1000 if done else None,
        "max_ms": done[-1] * 1000 if done else None,
        "errors": dict(tally.errors),
        "busy": (busy1 - busy0) / max(1, total1 - total0),
        "cpu_ms_per_op": {
            **{
                role: (cpu1[role] - cpu0[role]) * 1000 / max(1, ops)
                for role in cpu1
                if cpu1[role] - cpu0[role] > 0
            },
            "load generator": own * 1000 / max(1, ops),
        },
    }
    if scenario == "submit" and tally.triggered:
        waited = time.perf_counter()
        statuses = await _all_final(tally.triggered, keys[0], timeout=300)
        row["final"] = dict(statuses)
        row["final_after_s"] = round(time.perf_counter() - waited, 2)
    return row


WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_keys.lua"
WRK_SCRIPT_SUBMIT = Path(__file__).resolve().parent / "wrk_submit.lua"
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _wrk_ms(text: str) -> float:
    """A duration as wrk prints it (``850.00us``, ``12.3ms``, ``1.02s``, ``1.50m``), in ms."""
    found = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text)
    if found is None:
        raise SystemExit(f"wrk printed a duration this bench cannot read: {text!r}")
    number, unit = found.groups()
    return float(number) * _UNITS[unit]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def _run_wrk(
    deployment: Deployment,
    keys: list[str],
    clients: int,
    seconds: float,
    script: Path,
    path: str,
    env: dict[str, str],
    scenario: str,
) -> tuple[dict[str, Any], list[str]]:
    """wrk against every replica (one wrk each, one key per connection): the row, counted
    per request, and each wrk's output."""
    if shutil.which("wrk") is None:
        raise SystemExit("--generator wrk needs wrk: apt-get install wrk")
    replicas = len(deployment.urls)
    cpu0, (busy0, total0) = deployment.cpu(), machine_jiffies()
    children0 = _children_cpu()
    began = time.perf_counter()
    runs = []
    for n, url in enumerate(deployment.urls):
        share = [keys[i] for i in range(clients) if i % replicas == n]
        run_env = {**os.environ, **env, "BENCH_KEYS": ",".join(share)}
        if "BENCH_IDS" in env:  # each wrk writes the ids it triggered to a file of its own
            run_env["BENCH_IDS"] = f"{env['BENCH_IDS']}.{n}"
        command = ["wrk", f"-t{len(share)}", f"-c{len(share)}", f"-d{seconds:g}s", "--latency"]
        command += ["-s", str(script), f"{url}{path}"]
        runs.append(
            await asyncio.create_subprocess_exec(
                *command,
                env=run_env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        )
    outputs = [(await run.communicate())[0].decode() for run in runs]
    wall = time.perf_counter() - began
    cpu1, (busy1, total1) = deployment.cpu(), machine_jiffies()
    generator = _children_cpu() - children0
    requests = errors = 0
    p50s, p99s, tops = [], [], []
    for out in outputs:
        requests += int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
        failed = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        errors += int(failed.group(1)) if failed else 0
        # At the start of a line: a thread's "+/- Stdev" (99.50%) ends with "50%" too.
        p50 = re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE)
        p99 = re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE)
        p50s.append(_wrk_ms(p50.group(1)))  # type: ignore[union-attr]
        p99s.append(_wrk_ms(p99.group(1)))  # type: ignore[union-attr]
        # Thread Stats' Latency row: average, stdev, max (a stdev wrk cannot compute is
        # printed as nan: then the maximum is taken as the 99th percentile).
        latency = re.search(r"Latency\s+\S+\s+\S+\s+([0-9.]+(?:us|ms|s|m|h))\s", out)
        tops.append(_wrk_ms(latency.group(1)) if latency else p99s[-1])
    ok = requests - errors
    row = {
        "mode": deployment.mode,
        "scenario": scenario,
        "clients": clients,
        "seconds": round(wall, 2),
        "ops": ok,
        "ops_s": ok / seconds,
        "req_s": requests / seconds,
        "p50_ms": max(p50s),
        "p99_ms": max(p99s),
        "max_ms": max(tops),
        "errors": {"not 2xx": errors} if errors else {},
        "busy": (busy1 - busy0) / max(1, total1 - total0),
        "cpu_ms_per_op": {
            **{
                role: (cpu1[role] - cpu0[role]) * 1000 / max(1, requests)
                for role in cpu1
                if cpu1[role] - cpu0[role] > 0
            },
            "load generator": generator * 1000 / max(1, requests),
        },
    }
    return row, outputs


async def run_wrk_status(
    deployment: Deployment, keys: list[str], clients: int, seconds: float
) -> dict[str, Any]:
    """The status scenario driven by wrk: one wrk per replica, one key per connection."""
    target = await _reference(deployment.urls[0], keys[0])
    row, _ = await _run_wrk(
        deployment,
        keys,
        clients,
        seconds,
        WRK_SCRIPT,
        f"/v1/workflows/{target}",
        {},
        "status (wrk)",
    )
    return row


async def run_wrk_submit(
    deployment: Deployment, keys: list[str], clients: int, seconds: float, folder: Path
) -> dict[str, Any]:
    """The submit scenario driven by wrk (bench/wrk_submit.lua): each connection submits,
    then triggers the execution the answer named, and so on. An operation is the pair; the
    latencies are wrk's, per request; the CPU per operation includes running the execution
    to its end (the bench waits for that)."""
    await _reference(deployment.urls[0], keys[0])  # a warm-up, as in the other scenarios
    ids = folder / "triggered"
    env = {"BENCH_BODY": json.dumps(WORKFLOW), "BENCH_IDS": str(ids)}
    cpu0 = deployment.cpu()
    row, _ = await _run_wrk(
        deployment, keys, clients, seconds, WRK_SCRIPT_SUBMIT, "/", env, "submit (wrk)"
    )
    triggered = []
    for n, url in enumerate(deployment.urls):
        part = Path(f"{ids}.{n}")
        if part.exists():
            triggered += [(url, line) for line in part.read_text().split() if line]
    waited = time.perf_counter()
    ids_triggered = [i for _, i in triggered]
    while await deployment.unfinished(ids_triggered) and time.perf_counter() < waited + 300:
        await asyncio.sleep(0.1)
    row["final_after_s"] = round(time.perf_counter() - waited, 2)
    cpu1 = deployment.cpu()  # the executions' own work, up to their end, is in the figure
    statuses = await _all_final(triggered, keys[0], timeout=300)  # and as the API says
    row["final"] = dict(statuses)
    operations = max(1, len(triggered))
    row["ops"] = len(triggered)
    row["ops_s"] = len(triggered) / seconds
    generator = row["cpu_ms_per_op"]["load generator"] * row["req_s"] * seconds / operations
    row["cpu_ms_per_op"] = {
        **{
            role: (cpu1[role] - cpu0[role]) * 1000 / operations
            for role in cpu1
            if cpu1[role] - cpu0[role] > 0
        },
        "load generator": generator,
    }
    return row


def _print(rows: list[dict[str, Any]]) -> None:
    print(
        "| mode | scenario | clients | ops/s | requests/s | p50 | p99 | max | not 2xx "
        "| server CPU ms/op | load generator CPU ms/op | machine busy | all completed |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cpu = r["cpu_ms_per_op"]
        servers = ", ".join(
            f"{role} {value:.2f}" for role, value in cpu.items() if role != "load generator"
        )
        final = r.get("final")
        completed = ""
        if final is not None:
            completed = f"{final.get('COMPLETED', 0):,} of {sum(final.values()):,}"
            completed += f" in {r['final_after_s']} s"
        p50 = "-" if r["p50_ms"] is None else f"{r['p50_ms']:.1f} ms"
        p99 = "-" if r["p99_ms"] is None else f"{r['p99_ms']:.1f} ms"
        top = "-" if r["max_ms"] is None else f"{r['max_ms']:.0f} ms"
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(r["errors"].items())) or "none"
        print(
            f"| {r['mode']} | {r['scenario']} | {r['clients']} | {r['ops_s']:,.0f} "
            f"| {r['req_s']:,.0f} | {p50} | {p99} | {top} | {errors} | {servers} "
            f"| {cpu['load generator']:.2f} | {r['busy']:.0%} | {completed} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--mode", choices=["embedded", "scaleout", "both"], default="embedded")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (1-256)")
    parser.add_argument("--seconds", type=float, default=10.0, help="per scenario (max 120)")
    parser.add_argument("--only", default="submit,status", help="comma-separated scenarios")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument(
        "--api-workers",
        default="1",
        help="embedded: server processes (serve --workers); a list such as 1,2 alternates",
    )
    parser.add_argument(
        "--generator",
        choices=["httpx", "wrk"],
        default="httpx",
        help="who sends the requests: httpx clients in this process, or wrk",
    )
    args = parser.parse_args()
    clients = max(1, min(args.clients, MAX_CLIENTS))
    seconds = max(0.5, min(args.seconds, MAX_SECONDS))
    scenarios = [s.strip() for s in args.only.split(",") if s.strip()]
    workers = [int(n) for n in args.api_workers.split(",") if n.strip()]
    embedded_modes = [f"embedded:{n}" for n in workers]
    modes = {"embedded": embedded_modes, "scaleout": ["scaleout"]}.get(
        args.mode, [*embedded_modes, "scaleout"]
    )
    keys = _keys(clients)
    rows: list[dict[str, Any]] = []
    for round_no in range(args.rounds):
        for mode in modes if round_no % 2 == 0 else modes[::-1]:
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                if mode.startswith("embedded"):
                    deployment = embedded(folder, keys, int(mode.split(":")[1]))
                else:
                    deployment = scaleout(folder, keys, args.postgres, args.redis)
                try:
                    for scenario in scenarios:
                        if scenario == "status" and args.generator == "wrk":
                            row = asyncio.run(run_wrk_status(deployment, keys, clients, seconds))
                        elif scenario == "submit" and args.generator == "wrk":
                            row = asyncio.run(
                                run_wrk_submit(deployment, keys, clients, seconds, folder)
                            )
                        else:
                            row = asyncio.run(
                                run_scenario(deployment, keys, scenario, clients, seconds)
                            )
                        row["round"] = round_no + 1
                        rows.append(row)
                        print(json.dumps(row), file=sys.stderr)
                finally:
                    deployment.stop()
    print(
        f"{clients} clients x {seconds:g} s per scenario, {args.rounds} round(s), "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs"
    )
    _print(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
