"""Submit + trigger in N processes on one SQLite file, in process: CPU per operation of each.

    .venv/bin/python bench/api_app_processes.py --processes 1 --count 2000
    .venv/bin/python bench/api_app_processes.py --processes 2 --count 1000
    SEPARATE=1 .venv/bin/python bench/api_app_processes.py --processes 2   # a file each
    .venv/bin/python bench/api_app_processes.py --processes 2 --statements  # SQL per operation
    PYTHONPATH=<other tree>/src .venv/bin/python bench/api_app_processes.py --processes 2

What ``orchestrion serve --workers N`` does to a submit + trigger, without uvicorn, sockets or
a load generator: each process builds the application ``serve`` serves (as
``bench/api_app.py`` does, ``api_workers`` set to N, the shared metrics directory given when
N > 1) on the same SQLite file, and runs ``--concurrency`` clients of its own, each submitting
the 3-node definition of ``bench/api.py`` and triggering the execution, ``--count`` times in
all per process, after a warm-up; the processes start their counted work together. Per
process: its CPU per operation (``time.process_time``, the executions' runs included: each
waits for the executions it triggered), the read and write system calls it made per
operation (``/proc/self/io``), and with ``--statements`` the SQL statements its store
connection ran per operation (a statement tried again after ``SQLITE_BUSY`` counts each time).
``SEPARATE=1`` gives each process a file of its own: the processes then share the machine
and nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _io() -> tuple[int, int]:
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(fields["syscr"]), int(fields["syscw"])


def _trace_statements(counts: collections.Counter[str], on: list[bool]) -> None:
    """Count the statements of every SQLite connection opened from now on, while ``on[0]``."""
    connect = sqlite3.connect

    def traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn: sqlite3.Connection = connect(*args, **kwargs)

        def seen(sql: str) -> None:
            if on[0]:
                flat = re.sub(r"'[^']*'|\b[0-9][0-9.e]*\b", "?", re.sub(r"\s+", " ", sql))
                counts[flat[:100]] += 1

        conn.set_trace_callback(seen)
        return conn

    sqlite3.connect = traced  # type: ignore[assignment]


def child(folder: Path, index: int, processes: int, count: int, clients: int, sql: bool) -> None:
    from bench.api import WORKFLOW
    from bench.api_app import Client

    statements: collections.Counter[str] = collections.Counter()
    tracing = [False]
    if sql:
        _trace_statements(statements, tracing)
    from orchestrion.api.app import api_context, create_app
    from orchestrion.api.browser_guard import HostAllowList
    from orchestrion.observability.logging_setup import configure_logging
    from orchestrion.settings import load_settings
    from orchestrion.web import mount

    keys = [f"bench-key-{i:03d}-{'x' * 12}" for i in range(16)]
    name = f"bench{index}.db" if os.environ.get("SEPARATE") else "bench.db"
    settings = load_settings(
        database_url=f"sqlite:///{folder / name}",
        api_keys={key: "operator" for key in keys},
        log_level="WARNING",
        api_workers=processes,
    )
    app = create_app(settings=settings)
    ctx = api_context(app)
    ctx.hosts = HostAllowList.of(settings.allowed_hosts, "127.0.0.1")
    mount(app)
    configure_logging("json", settings.log_level, masker=ctx.engine.governance.masker)
    client = Client(app)
    auth = [[(b"authorization", f"Bearer {key}".encode())] for key in keys]
    json_type = [(b"content-type", b"application/json")]
    definition = json.dumps(WORKFLOW).encode()
    trigger_body = json.dumps({"input_params": {"n": 1}}).encode()

    async def submit(i: int, triggered: list[str]) -> None:
        headers = auth[i % 16] + json_type
        status, _, body = await client.call("POST", "/v1/workflow", headers, definition)
        assert status == 201, body
        execution_id = json.loads(body)["execution_id"]
        path = f"/v1/workflow/trigger/{execution_id}"
        status, _, body = await client.call("POST", path, headers, trigger_body)
        assert status == 202, body
        triggered.append(execution_id)

    async def loop(n: int, triggered: list[str]) -> None:
        for i in range(n):
            await submit(i, triggered)

    async def main() -> None:
        async with app.router.lifespan_context(app):
            warm: list[str] = []
            await asyncio.gather(*(loop(20, warm) for _ in range(clients)))
            for execution_id in warm:
                await ctx.engine.wait(execution_id, timeout=120)
            (folder / f"ready.{index}").touch()
            while not (folder / "go").exists():
                await asyncio.sleep(0.01)
            io0, tracing[0] = _io(), True
            began = time.process_time()
            triggered: list[str] = []
            await asyncio.gather(*(loop(count // clients, triggered) for _ in range(clients)))
            for execution_id in triggered:
                await ctx.engine.wait(execution_id, timeout=120)
            cpu, tracing[0], io1 = time.process_time() - began, False, _io()
            n = len(triggered)
            reads, writes = ((b - a) / n for a, b in zip(io0, io1, strict=True))
            print(
                f"process {index}: {n} operations, {cpu * 1e6 / n:,.0f} us CPU per operation,"
                f" {reads:.1f} read and {writes:.1f} write system calls per operation",
                flush=True,
            )
            for text, times in statements.most_common(20):
                print(f"  {times / n:6.2f}  {text}")

    asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--count", type=int, default=1000, help="operations per process")
    parser.add_argument("--concurrency", type=int, default=8, help="clients per process")
    parser.add_argument("--statements", action="store_true", help="count SQL per operation")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        folder, index = Path(args.child[0]), int(args.child[1])
        child(folder, index, args.processes, args.count, args.concurrency, args.statements)
        return
    folder = Path(tempfile.mkdtemp(prefix="orchestrion-api-processes-"))
    env = dict(os.environ)
    if args.processes > 1:
        shared = folder / "metrics"
        shared.mkdir()
        env["PROMETHEUS_MULTIPROC_DIR"] = str(shared)  # as serve --workers gives its processes
    command = [sys.executable, __file__, "--processes", str(args.processes)]
    command += ["--count", str(args.count), "--concurrency", str(args.concurrency)]
    command += ["--statements"] if args.statements else []
    running = []
    for index in range(args.processes):
        running.append(subprocess.Popen([*command, "--child", str(folder), str(index)], env=env))
        while index == 0 and not (folder / "ready.0").exists():  # the first one makes the file
            if running[0].poll() is not None:
                raise SystemExit("the first process exited before it was ready")
            time.sleep(0.05)
    while not all((folder / f"ready.{i}").exists() for i in range(args.processes)):
        time.sleep(0.05)
    (folder / "go").touch()
    codes = [process.wait() for process in running]
    if any(codes):
        raise SystemExit(f"a process failed: exit statuses {codes}")


if __name__ == "__main__":
    main()
