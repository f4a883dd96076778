"""Redis, then PostgreSQL, restarted in the middle of a scale-out run: nothing is lost.

Redis here keeps nothing on disk, so a restart loses every stream, group and guard: the
orchestrators notice (the epoch key is gone), dispatch again what was in flight and hand over
again the starts nobody took. A PostgreSQL restart fails the commits of the moment: engines
forget the uncommitted turn and reload from the store when it answers again, and completions
stay unacknowledged in Redis until the turn that applies them is committed.

The Redis test uses a redis-server of its own on a free port, the PostgreSQL one restarts a
cluster of its own, started from the local PostgreSQL binaries (both skip without them, and
fail under CI=true).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from cluster import Cluster

from orchestrion.core.states import FINAL_EXECUTION_STATES, ExecutionStatus
from orchestrion.engine.facade import Engine
from orchestrion.errors import OrchestrionError
from orchestrion.settings import load_settings
from own_postgres import OwnPostgres, own_postgres
from own_postgres import available as own_postgres_unavailable

pytestmark = pytest.mark.slow

EXECUTIONS = 30


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def chain(effects: Path, length: int = 5, seconds: float = 0.3) -> dict[str, Any]:
    nodes = [
        {
            "id": f"n{i}",
            "handler": "python",
            "dependencies": [f"n{i - 1}"] if i else [],
            "config": {
                "function": "crash_effects:keyed_effect",
                "params": {"effects": str(effects), "seconds": seconds},
            },
        }
        for i in range(length)
    ]
    return {"name": "restart-chain", "dag": {"nodes": nodes}}


async def settle_all(engine: Engine, ids: list[str], timeout: float) -> dict[str, str]:
    """Statuses once all are final; store errors (the database is restarting) are waited out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            statuses = {eid: (await engine.store.get_execution(eid)).status for eid in ids}
        except OrchestrionError:
            statuses = {}
        if statuses and all(s in FINAL_EXECUTION_STATES for s in statuses.values()):
            return {eid: s.value for eid, s in statuses.items()}
        if time.monotonic() > deadline:
            raise AssertionError(f"not final after {timeout}s: {Counter(statuses.values())}")
        await asyncio.sleep(0.3)


async def running(engine: Engine, ids: list[str], timeout: float = 30) -> None:
    """Until every execution has started and none has finished its chain yet (mid-run)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = [(await engine.store.get_execution(eid)).status for eid in ids]
        if all(s is ExecutionStatus.RUNNING for s in statuses):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not all running after {timeout}s: {Counter(statuses)}")


async def check_exactly_once(engine: Engine, ids: list[str], effects: Path, nodes: int) -> None:
    for eid in ids:
        events = await engine.store.list_events(eid, types=["node.completed"])
        completed = Counter(e.node_id for e in events)
        assert len(completed) == nodes and set(completed.values()) == {1}, (eid, completed)
    keys = [p.name for p in effects.iterdir() if p.name != "deliveries.log"]
    per_node = Counter(key.rsplit("_", 1)[0] for key in keys)
    assert len(per_node) == len(ids) * nodes and set(per_node.values()) == {1}


async def diagnose(engine: Engine, ids: list[str], redis_url: str, prefix: str, logs: Path) -> str:
    """What a stuck execution looks like: its nodes, their guards, the DLQ, its log lines."""
    from redis.asyncio import Redis

    from orchestrion.cluster.streams import ORCHESTRATOR_GROUP, StreamNames

    names = StreamNames(prefix)
    lines: list[str] = []
    redis = Redis.from_url(redis_url)
    try:
        lines.append(f"dlq entries: {await redis.xlen(names.dlq)}")
        for eid in ids:
            record = await engine.store.get_execution(eid)
            if record.status in FINAL_EXECUTION_STATES:
                continue
            lines.append(f"{eid}: {record.status.value} owner={record.owner}")
            for run in await engine.store.get_node_runs(eid):
                guard = await redis.get(names.guard(eid, run.node_id, run.attempt, "r"))
                lines.append(f"  {run.node_id} {run.state.value} attempt={run.attempt} {guard=}")
            # The journal, and what is still unacknowledged on the orchestrators' streams for
            # this execution: enough to tell a lost completion from one never applied.
            for event in await engine.store.list_events(eid):
                lines.append(
                    f"  journal {event.type} {event.node_id} #{event.attempt} {event.at:.3f}"
                )
            streams = [names.completions]
            streams += [key.decode() async for key in redis.scan_iter(match=names.inbox_pattern)]
            for stream in streams:
                for entry_id, fields in await redis.xrange(stream):
                    raw = fields.get(b"m", b"")
                    if eid.encode() in raw:
                        pending = await redis.xpending_range(
                            stream, ORCHESTRATOR_GROUP, entry_id, entry_id, 1
                        )
                        lines.append(f"  on {stream} {entry_id.decode()} {pending=}: {raw[:160]!r}")
            for log in sorted(logs.glob("*.log")):
                for line in log.read_text(errors="replace").splitlines():
                    if eid in line:
                        lines.append(f"  {log.name}: {line[:300]}")
    finally:
        await redis.aclose()
    return "\n".join(lines)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _redis_server(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    assert binary is not None
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(
        [binary, *args, "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("redis-server did not start")


@pytest.mark.timeout(360)
async def test_a_redis_restart_mid_run_loses_nothing(tmp_path: Path, postgres_url: str) -> None:
    if shutil.which("redis-server") is None:
        _unavailable("no redis-server binary to restart")
    port = _free_port()
    redis_url = f"redis://127.0.0.1:{port}/0"
    redis = _redis_server(port, tmp_path)
    effects = tmp_path / "effects"
    effects.mkdir()
    cluster = Cluster.for_test(postgres_url, redis_url, "restart", tmp_path / "logs")
    settings = load_settings(database_url=postgres_url, redis_url=redis_url, redis_prefix="restart")
    try:
        async with Engine(settings=settings, drive=False) as api:
            cluster.start("reaper", "reaper")
            cluster.start("orchestrator-0", "orchestrator")
            cluster.start("worker-0", "worker", "--concurrency", "8")
            cluster.start("worker-1", "worker", "--concurrency", "8")
            definition = await api.submit(chain(effects))
            ids = [(await api.start_execution(definition, {})).id for _ in range(EXECUTIONS)]
            await running(api, ids)
            redis.kill()  # SIGKILL: every stream, group and guard is gone
            redis.wait(10)
            await asyncio.sleep(1.0)
            redis = _redis_server(port, tmp_path)
            try:
                statuses = await settle_all(api, ids, timeout=200)
            except AssertionError as exc:
                report = await diagnose(api, ids, redis_url, "restart", tmp_path / "logs")
                raise AssertionError(f"{exc}\n{report}\n{cluster.log_tail()}") from None
            assert set(statuses.values()) == {ExecutionStatus.COMPLETED.value}, statuses
            await check_exactly_once(api, ids, effects, nodes=5)
    finally:
        codes = cluster.stop()
        redis.kill()
        redis.wait(10)
    assert all(code == 0 for code in codes.values()), (codes, cluster.log_tail())


@pytest.mark.timeout(360)
async def test_a_postgresql_restart_mid_run_loses_nothing(
    tmp_path: Path, redis_server: str, redis_prefix: str
) -> None:
    # A cluster of the test's own: restarting the shared server would fail the tests that
    # other workers run at the same moment.
    if (why := own_postgres_unavailable()) is not None:
        _unavailable(why)
    with own_postgres() as server:
        await _restart_mid_run(tmp_path, server, redis_server, redis_prefix)


async def _restart_mid_run(
    tmp_path: Path, server: OwnPostgres, redis_server: str, redis_prefix: str
) -> None:
    postgres_url = server.url
    effects = tmp_path / "effects"
    effects.mkdir()
    cluster = Cluster.for_test(postgres_url, redis_server, redis_prefix, tmp_path / "logs")
    settings = load_settings(
        database_url=postgres_url, redis_url=redis_server, redis_prefix=redis_prefix
    )
    try:
        async with Engine(settings=settings, drive=False) as api:
            cluster.start("reaper", "reaper")
            cluster.start("orchestrator-0", "orchestrator")
            cluster.start("orchestrator-1", "orchestrator")
            cluster.start("worker-0", "worker", "--concurrency", "8")
            definition = await api.submit(chain(effects))
            ids = [(await api.start_execution(definition, {})).id for _ in range(EXECUTIONS)]
            await running(api, ids)
            await asyncio.to_thread(server.restart)
            try:
                statuses = await settle_all(api, ids, timeout=200)
            except AssertionError as exc:
                report = await diagnose(api, ids, redis_server, redis_prefix, tmp_path / "logs")
                raise AssertionError(f"{exc}\n{report}\n{cluster.log_tail()}") from None
            assert set(statuses.values()) == {ExecutionStatus.COMPLETED.value}, statuses
            await check_exactly_once(api, ids, effects, nodes=5)
    finally:
        codes = cluster.stop()
    assert all(code == 0 for code in codes.values()), (codes, cluster.log_tail())
