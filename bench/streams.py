"""Event streams under load: a 100-node chain run while N streams of it are open.

    .venv/bin/python bench/streams.py                       # 0, 64 and 240 streams
    .venv/bin/python bench/streams.py --streams 240 --scope all --rounds 3

One ``orchestrion serve`` (a real process, a fresh SQLite file, 16 operator keys, no rate
limits) per run. N streams are opened (``GET /v1/workflows/{id}/events/stream``, or the
global ``/v1/events/stream`` with ``--scope all``; keys taken in turn, at most 16 streams per
key) by asyncio httpx clients in this process; then the chain is triggered (each node a
``noop`` with a 1 ms sleep, so each is its own commit) and polled until it completes. Per
run: the chain's wall time from trigger to completion, the server's CPU time over the same
span (from /proc), and the events the streams received in all. The streams' reader (this
process) shares the machine with the server: with hundreds of streams it, not the server,
may set the wall time; the server's CPU is the figure that carries over. To compare with
another tree: ``PYTHONPATH=<tree>/src``, which the server inherits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

KEYS = [f"bench-stream-key-{i:03d}-abcdef" for i in range(16)]
CHAIN: dict[str, Any] = {
    "name": "streamed-chain",
    "dag": {
        "nodes": [
            {
                "id": f"n{i}",
                "handler": "noop",
                "config": {"sleep": 0.001},
                "dependencies": [f"n{i - 1}"] if i else [],
            }
            for i in range(100)
        ]
    },
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(streams: int, scope: str) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp())
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRION_")}
    env.update(
        ORCHESTRION_API_KEYS=",".join(f"{k}:operator" for k in KEYS),
        ORCHESTRION_DATABASE_URL=f"sqlite:///{folder / 'bench.db'}",
        ORCHESTRION_LOG_LEVEL="WARNING",
        ORCHESTRION_RATE_LIMIT_PER_SECOND="0",
    )
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "orchestrion.cli.app", "serve", "--port", str(port)]
    with (folder / "server.log").open("wb") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
        auth = {"Authorization": f"Bearer {KEYS[0]}"}
        async with httpx.AsyncClient(base_url=url, headers=auth, timeout=60) as client:
            execution_id = (await client.post("/v1/workflow", json=CHAIN)).json()["execution_id"]
            path = (
                f"/v1/workflows/{execution_id}/events/stream"
                if scope == "one"
                else "/v1/events/stream"
            )
            received = [0]

            async def stream(n: int) -> None:
                headers = {"Authorization": f"Bearer {KEYS[n % len(KEYS)]}"}
                async with (
                    httpx.AsyncClient(base_url=url, headers=headers, timeout=None) as reader,
                    reader.stream("GET", path) as response,
                ):
                    if response.status_code != 200:
                        raise SystemExit(f"stream refused: {response.status_code}")
                    async for line in response.aiter_lines():
                        if line.startswith("data:"):
                            received[0] += 1

            readers = [asyncio.create_task(stream(n)) for n in range(streams)]
            await asyncio.sleep(2)  # every stream open and waiting
            cpu0, began = _cpu(server.pid), time.perf_counter()
            await client.post(f"/v1/workflow/trigger/{execution_id}", json={})
            while (await client.get(f"/v1/workflows/{execution_id}")).json()["status"] not in (
                "COMPLETED",
                "FAILED",
            ):
                await asyncio.sleep(0.02)
            wall, cpu = time.perf_counter() - began, _cpu(server.pid) - cpu0
            await asyncio.sleep(1)  # the last events reach the readers
            for reader in readers:
                reader.cancel()
            return {
                "streams": streams,
                "scope": scope,
                "wall_s": round(wall, 3),
                "server_cpu_s": round(cpu, 3),
                "events_received": received[0],
            }
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--streams", default="0,64,240", help="comma-separated stream counts")
    parser.add_argument("--scope", choices=["one", "all"], default="one")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    counts = [int(n) for n in args.streams.split(",") if n.strip()]
    print("| round | streams | scope | chain wall | server CPU | events received |")
    print("|---|---|---|---|---|---|")
    for round_no in range(args.rounds):
        for count in counts:
            row = asyncio.run(run(count, args.scope))
            print(json.dumps(row), file=sys.stderr)
            print(
                f"| {round_no + 1} | {count} | {args.scope} | {row['wall_s']:.2f} s "
                f"| {row['server_cpu_s']:.2f} s | {row['events_received']:,} |"
            )


if __name__ == "__main__":
    main()
