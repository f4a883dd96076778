"""Scale-out benchmark: real orchestrator and worker processes on PostgreSQL + Redis Streams.

    .venv/bin/python bench/scaleout.py                              # 1, 2 and 4 workers
    .venv/bin/python bench/scaleout.py --workers 1,2,4 --nodes 10000 --orchestrators 2
    .venv/bin/python bench/scaleout.py --workers 2 --profile /tmp/prof   # py-spy, raw stacks

For each worker count, in a fresh PostgreSQL database and under a fresh Redis prefix, the bench
starts the processes a user would: ``orchestrion orchestrator`` (``--orchestrators`` of them)
and N ``orchestrion worker --handlers noop --concurrency C``, configured only through the
``ORCHESTRION_`` environment. The bench process itself is what the REST API is in scale-out
mode: an ``Engine(drive=False)`` that stores definitions, creates executions and hands their
start to the orchestrators through the shared completions stream. It never runs a node, so
every node crosses the path under test: orchestrator commit -> task stream -> worker ->
inbox stream -> orchestrator commit (the orchestrators run with ``ORCHESTRION_INLINE_ATTEMPTS=
false``: by default they would run the no-ops in their own turn, which ``--inline`` measures).
Workloads, after a small warm-up:

    latency     --chains concurrent chains of --chain-length no-op nodes; per edge a -> b,
                the time from a's ``node.completed`` to b's ``node.started`` in the event
                journal (both stamped by the workers, on this host's clock): p50 / p99
    throughput  executions of a 1 -> --width -> 1 no-op fan-out, --nodes in all, started
                together; nodes/s = completed nodes / (last ``node.completed`` in the
                journal - the moment the bench asked for the first start)

Also reported: peak RSS (VmHWM) of the orchestrator and of the largest worker, CPU seconds of
each during the throughput phase, and how busy the machine's cores were (/proc/stat), since
PostgreSQL, Redis and the bench share the same cores. Processes get SIGTERM, then SIGKILL;
the database is dropped and the Redis prefix deleted at the end. Each phase is bounded by
--timeout; sizes are capped so a run takes a few minutes at most.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.workloads import fan_out

from orchestrion.core.record_types import RecordType

MAX_WORKERS, MAX_NODES, MAX_EDGES = 16, 100_000, 20_000
FINAL = ("completed", "failed", "cancelled")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def chain_of_noops(length: int) -> dict[str, Any]:
    """``length`` no-op nodes in a line (no templates: the dispatch path only)."""
    nodes: list[dict[str, Any]] = [{"id": "c0", "handler": "noop"}]
    nodes += [
        {"id": f"c{i}", "handler": "noop", "dependencies": [f"c{i - 1}"]} for i in range(1, length)
    ]
    return {"name": f"bench-chain-{length}", "dag": {"nodes": nodes}}


# ---------------------------------------------------------------------------- processes


@dataclass
class Proc:
    role: str
    popen: subprocess.Popen[bytes]
    log: Path
    profiler: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid


def _command() -> list[str]:
    script = Path(sys.executable).parent / "orchestrion"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "orchestrion.cli.app"]


def spawn(role: str, args: list[str], env: dict[str, str], folder: Path, n: int) -> Proc:
    log = folder / f"{role}-{n}.log"
    handle = log.open("wb")
    popen = subprocess.Popen([*_command(), *args], stdout=handle, stderr=subprocess.STDOUT, env=env)
    handle.close()
    return Proc(role, popen, log)


def stop_all(procs: list[Proc], grace: float = 15.0) -> None:
    """SIGTERM every process, wait up to ``grace`` s, then SIGKILL what is left."""
    for proc in procs:
        if proc.popen.poll() is None:
            proc.popen.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.popen.wait()


def vm_hwm_mib(pid: int) -> float | None:
    """Peak resident set size of ``pid`` (VmHWM), in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def service_cpu(database: str) -> dict[str, float]:
    """CPU seconds so far of the PostgreSQL backends serving ``database`` and of the Redis
    server (shared: it counts whatever else uses it too), read from /proc; backends that exit
    during a phase are not counted."""
    found = {"postgres": 0.0, "redis-server": 0.0}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            if comm == "postgres" and database not in (entry / "cmdline").read_text():
                continue
        except OSError:
            continue
        if comm in found:
            found[comm] += cpu_seconds(int(entry.name))
    return found


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # without guest time, already counted in user
    return total - idle, total


def start_profilers(procs: list[Proc], folder: Path, label: str) -> None:
    """py-spy on the first orchestrator and the first worker (raw collapsed stacks)."""
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    seen: set[str] = set()
    for proc in procs:
        if proc.role in seen:
            continue
        seen.add(proc.role)
        out = folder / f"{label}-{proc.role}.txt"
        command = [str(py_spy), "record", "--pid", str(proc.pid), "--format", "raw"]
        proc.profiler = subprocess.Popen(
            [*command, "--rate", "250", "--nonblocking", "-o", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def stop_profilers(procs: list[Proc]) -> None:
    for proc in procs:
        if proc.profiler is not None and proc.profiler.poll() is None:
            proc.profiler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
    for proc in procs:
        if proc.profiler is not None:
            try:
                proc.profiler.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.profiler.kill()
            proc.profiler = None


# ---------------------------------------------------------------------------- infrastructure


def with_database(dsn: str, database: str) -> str:
    return dsn.rsplit("/", 1)[0] + "/" + database


async def admin(dsn: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def delete_prefix(redis_url: str, prefix: str) -> int:
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for i in range(0, len(keys), 1000):
            await client.delete(*keys[i : i + 1000])
        return len(keys)
    finally:
        await client.aclose()


async def wait_ready(redis: Any, prefix: str, procs: list[Proc], timeout: float = 60) -> None:
    """Until every orchestrator and worker has its heartbeat key in Redis."""
    want = {role: sum(p.role == role for p in procs) for role in ("orchestrator", "worker")}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.popen.poll() is not None:
                raise SystemExit(f"{proc.role} exited early:\n{proc.log.read_text()[-3000:]}")
        counts = {}
        for role in want:
            counts[role] = len([k async for k in redis.scan_iter(match=f"{prefix}:{role}:*")])
        if all(counts[role] >= n for role, n in want.items()):
            return
        await asyncio.sleep(0.1)
    raise SystemExit(f"processes not ready after {timeout:g} s")


# ---------------------------------------------------------------------------- workloads


@dataclass
class Phase:
    ids: list[str]
    t0: float
    statuses: dict[str, int] = field(default_factory=dict)
    events: list[Any] = field(default_factory=list)


async def redis_calls(redis: Any) -> dict[str, int]:
    """Calls so far per Redis command (INFO commandstats; server-wide)."""
    stats = await redis.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


async def start_all(api: Any, definition: Any, count: int) -> tuple[list[str], float]:
    """Create and hand over ``count`` executions at once (as concurrent API calls would)."""
    t0 = time.time()
    records = await asyncio.gather(*(api.start_execution(definition) for _ in range(count)))
    return [r.id for r in records], t0


async def wait_final(dsn: str, ids: list[str], timeout: float) -> dict[str, int]:
    """Poll the executions table until every one of ``ids`` is final; statuses by count."""
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        deadline = time.monotonic() + timeout
        while True:
            rows = await conn.fetch(
                "SELECT status, count(*) AS n FROM executions WHERE id = ANY($1::text[])"
                " GROUP BY status",
                ids,
            )
            statuses = {row["status"]: row["n"] for row in rows}
            if sum(statuses.get(s, 0) for s in FINAL) >= len(ids):
                return statuses
            if time.monotonic() > deadline:
                statuses["timed out"] = len(ids) - sum(statuses.get(s, 0) for s in FINAL)
                return statuses
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


async def journal(store: Any, ids: list[str], types: list[str]) -> list[Any]:
    """The events of ``types`` of the executions ``ids``, through ``Store.list_events``."""
    wanted = set(ids)
    found: list[Any] = []
    after = 0
    while True:
        page = await store.list_events(after_seq=after, limit=10_000, types=types)
        if not page:
            return found
        found += [e for e in page if e.execution_id in wanted]
        after = page[-1].seq


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def chain_edges(events: list[Any]) -> list[float]:
    """Seconds from c{i-1} completed to c{i} started, for every chain edge in ``events``."""
    completed: dict[tuple[str, str], float] = {}
    started: dict[tuple[str, str], float] = {}
    for e in events:
        (completed if e.type == RecordType.NODE_COMPLETED else started)[
            e.execution_id, e.node_id
        ] = e.at
    gaps = []
    for (execution_id, node), at in started.items():
        i = int(node[1:])
        parent = completed.get((execution_id, f"c{i - 1}")) if i > 0 else None
        if parent is not None:
            gaps.append(at - parent)
    return gaps


# ---------------------------------------------------------------------------- one run


async def run_once(workers: int, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    from redis.asyncio import Redis

    from orchestrion.engine.facade import Engine
    from orchestrion.settings import load_settings

    tag = uuid.uuid4().hex[:10]
    database, prefix = f"orchestrion_bench_{tag}", f"orchestrion-bench-{tag}"
    dsn = with_database(args.postgres, database)
    await admin(args.postgres, f'CREATE DATABASE "{database}"')
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRION_")}
    env.update(
        {
            "ORCHESTRION_DATABASE_URL": dsn,
            "ORCHESTRION_REDIS_URL": args.redis,
            "ORCHESTRION_REDIS_PREFIX": prefix,
            "ORCHESTRION_LOG_LEVEL": "WARNING",
            # No-op attempts would run in the orchestrator's turn (no Redis round trip at
            # all); off, every node crosses the worker path this bench is about.
            "ORCHESTRION_INLINE_ATTEMPTS": "true" if args.inline else "false",
        }
    )
    settings = load_settings(
        database_url=dsn, redis_url=args.redis, redis_prefix=prefix, log_level="WARNING"
    )
    redis = Redis.from_url(args.redis)
    procs: list[Proc] = []
    row: dict[str, Any] = {"workers": workers, "orchestrators": args.orchestrators}
    try:
        # drive=False: the API's hand-over mode; opening it migrates the fresh database.
        async with Engine(settings=settings, drive=False) as api:
            for n in range(args.orchestrators):
                procs.append(spawn("orchestrator", ["orchestrator"], env, folder, n))
            worker_args = ["worker", "--handlers", "noop", "--concurrency", str(args.concurrency)]
            for n in range(workers):
                procs.append(spawn("worker", worker_args, env, folder, n))
            await wait_ready(redis, prefix, procs)

            fan = await api.submit(fan_out(args.width))
            chain = await api.submit(chain_of_noops(args.chain_length))
            warm = await api.submit(fan_out(20))
            ids, _ = await start_all(api, warm, 4)
            await wait_final(dsn, ids, args.timeout)

            # latency: concurrent chains
            ids, t0 = await start_all(api, chain, args.chains)
            statuses = await wait_final(dsn, ids, args.timeout)
            events = await journal(
                api.store, ids, [RecordType.NODE_COMPLETED, RecordType.NODE_STARTED]
            )
            gaps = chain_edges(events)
            row["latency_statuses"] = statuses
            row["edges"] = len(gaps)
            if gaps:
                row["p50_ms"] = percentile(gaps, 0.50) * 1000
                row["p99_ms"] = percentile(gaps, 0.99) * 1000
                row["max_ms"] = max(gaps) * 1000

            # throughput: fan-outs started together
            count = max(1, round(args.nodes / (args.width + 2)))
            if args.profile:
                start_profilers(procs, args.profile, f"w{workers}")
            cpu0 = {p.pid: cpu_seconds(p.pid) for p in procs}
            busy0, total0 = machine_jiffies()
            services0 = service_cpu(database)
            bench0 = cpu_seconds(os.getpid())
            calls0 = await redis_calls(redis)
            wall0 = time.perf_counter()
            ids, t0 = await start_all(api, fan, count)
            statuses = await wait_final(dsn, ids, args.timeout)
            wall = time.perf_counter() - wall0
            busy1, total1 = machine_jiffies()
            services = {k: v - services0[k] for k, v in service_cpu(database).items()}
            bench_cpu = cpu_seconds(os.getpid()) - bench0
            calls = await redis_calls(redis)
            cpu = {p.pid: cpu_seconds(p.pid) - cpu0[p.pid] for p in procs}
            if args.profile:
                stop_profilers(procs)
            done = await journal(api.store, ids, [RecordType.NODE_COMPLETED])
            last = max((e.at for e in done), default=t0)
            row["throughput_statuses"] = statuses
            row["nodes"] = len(done)
            row["seconds"] = last - t0
            row["wall_s"] = wall
            row["nodes_per_s"] = len(done) / (last - t0) if last > t0 else 0.0
            row["cpu_orchestrator_s"] = sum(cpu[p.pid] for p in procs if p.role == "orchestrator")
            row["cpu_workers_s"] = sum(cpu[p.pid] for p in procs if p.role == "worker")
            row["cpu_postgres_s"] = services["postgres"]
            row["cpu_redis_s"] = services["redis-server"]
            row["cpu_bench_s"] = bench_cpu
            row["redis_calls_per_node"] = {
                name: round((n - calls0.get(name, 0)) / max(1, len(done)), 2)
                for name, n in sorted(calls.items())
                if n - calls0.get(name, 0) >= len(done) / 100
            }
            row["machine_busy"] = (busy1 - busy0) / max(1, total1 - total0)
            counted = sum(cpu.values()) + sum(services.values()) + bench_cpu
            row["cpu_other_s"] = max(0.0, (busy1 - busy0) / CLK_TCK - counted)
            row["rss_orchestrator_mib"] = max(
                vm_hwm_mib(p.pid) or 0 for p in procs if p.role == "orchestrator"
            )
            row["rss_worker_mib"] = max(vm_hwm_mib(p.pid) or 0 for p in procs if p.role == "worker")
    finally:
        stop_profilers(procs)
        stop_all(procs)
        await redis.aclose()
        with contextlib.suppress(Exception):
            await delete_prefix(args.redis, prefix)
        with contextlib.suppress(Exception):
            await admin(args.postgres, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    return row


# ---------------------------------------------------------------------------- report


def table(rows: list[dict[str, Any]]) -> str:
    head = [
        "workers",
        "orch",
        "nodes",
        "seconds",
        "nodes/s",
        "edges",
        "p50 ms",
        "p99 ms",
        "orch CPU",
        "workers CPU",
        "PG CPU",
        "Redis CPU",
        "other CPU",
        "machine busy",
        "orch RSS",
        "worker RSS",
    ]
    body = []
    for r in rows:
        ok = r["throughput_statuses"].get("completed", 0) == sum(r["throughput_statuses"].values())
        body.append(
            [
                str(r["workers"]),
                str(r["orchestrators"]),
                f"{r['nodes']:,}" + ("" if ok else f" {r['throughput_statuses']}"),
                f"{r['seconds']:.2f}",
                f"{r['nodes_per_s']:,.0f}",
                f"{r['edges']:,}",
                f"{r.get('p50_ms', float('nan')):.1f}",
                f"{r.get('p99_ms', float('nan')):.1f}",
                f"{r['cpu_orchestrator_s']:.1f} s",
                f"{r['cpu_workers_s']:.1f} s",
                f"{r['cpu_postgres_s']:.1f} s",
                f"{r['cpu_redis_s']:.1f} s",
                f"{r['cpu_other_s']:.1f} s",
                f"{r['machine_busy'] * 100:.0f}%",
                f"{r['rss_orchestrator_mib']:.0f} MiB",
                f"{r['rss_worker_mib']:.0f} MiB",
            ]
        )
    widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in body]
    lines.insert(0, "  ".join("-" * w for w in widths))
    lines.insert(0, "  ".join(c.rjust(w) for c, w in zip(head, widths, strict=True)))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    parser.add_argument("--orchestrators", type=int, default=1, choices=(1, 2))
    parser.add_argument("--concurrency", type=int, default=64, help="attempts per worker")
    parser.add_argument("--nodes", type=int, default=10_000, help="throughput nodes in all")
    parser.add_argument("--width", type=int, default=200, help="fan-out width (1 -> W -> 1)")
    parser.add_argument("--chains", type=int, default=20, help="concurrent chains (latency)")
    parser.add_argument("--chain-length", type=int, default=151, help="nodes per chain")
    parser.add_argument("--repeat", type=int, default=1, help="runs per worker count (median)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per phase")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--inline",
        action="store_true",
        help="let the orchestrator run no-op attempts in its turn (its default): the workers"
        " get only those a turn's 5 ms leave",
    )
    parser.add_argument("--profile", type=Path, help="py-spy raw stacks into this folder")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",") if n.strip()]
    if not counts or min(counts) < 1 or max(counts) > MAX_WORKERS:
        parser.error(f"--workers: counts between 1 and {MAX_WORKERS}")
    args.nodes = max(1, min(args.nodes, MAX_NODES))
    args.width = max(1, min(args.width, 5_000))
    args.chain_length = max(2, args.chain_length)
    args.chains = max(1, min(args.chains, MAX_EDGES // (args.chain_length - 1) or 1))
    args.timeout = max(5.0, min(args.timeout, 300.0))
    args.repeat = max(1, min(args.repeat, 5))
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)

    rows = []
    with tempfile.TemporaryDirectory(prefix="orchestrion-scaleout-") as tmp:
        for workers in counts:
            runs = []
            for _ in range(args.repeat):
                try:
                    runs.append(asyncio.run(run_once(workers, args, Path(tmp))))
                except Exception as exc:  # a server restarted under us: that run is void
                    print(f"run with {workers} worker(s) failed: {exc!r}", file=sys.stderr)
                    continue
                print(json.dumps(runs[-1]), file=sys.stderr)
            if not runs:
                raise SystemExit(f"every run with {workers} worker(s) failed")
            runs.sort(key=lambda r: r["nodes_per_s"])
            rows.append({**runs[(len(runs) - 1) // 2], "runs": len(runs)})
    print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs; "
        f"throughput: {rows[0]['nodes']:,} nodes in 1 -> {args.width} -> 1 fan-outs started "
        f"together; latency: {args.chains} concurrent chains of {args.chain_length}; "
        f"worker concurrency {args.concurrency}"
    )
    print(table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
