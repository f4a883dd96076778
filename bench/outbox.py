"""The cost of event sinks on the embedded hot path: the same workload, sinks off and on.

    .venv/bin/python bench/outbox.py                   # 300 executions, 5 alternating pairs
    .venv/bin/python bench/outbox.py --executions 500 --repeat 7
    .venv/bin/python bench/outbox.py --sink redis://127.0.0.1:6379/15

Each execution is a chain of ten ``noop`` nodes (32 journal records: started, three per node,
completed). "sinks on" configures one webhook sink to a receiver in another process (a plain
``http.server`` answering 204), or with ``--sink redis://...`` a Redis Stream sink, so every
record is also written to the outbox in the turn's commit and published by the publisher task
of the same process. Timed: from the first start to the last ``wait`` (the publisher runs
meanwhile, on the same event loop, and its CPU is counted); then, separately, how long the
outbox took to drain after the last execution ended. Runs alternate off and on in one
process, so load from elsewhere hits both alike; the median wall and CPU time per execution
are reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

RECEIVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(204); self.end_headers()
    protocol_version = "HTTP/1.1"
class S(ThreadingHTTPServer):
    request_queue_size = 512
    daemon_threads = True
S(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def workflow() -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [{"id": "n0", "handler": "noop"}]
    for i in range(1, 10):
        nodes.append({"id": f"n{i}", "handler": "noop", "dependencies": [f"n{i - 1}"]})
    return {"name": "outbox-bench", "dag": {"nodes": nodes}}


async def _once(executions: int, sink_url: str | None) -> tuple[float, float, float]:
    from orchestrion.engine.facade import Engine
    from orchestrion.settings import load_settings

    sinks = None
    if sink_url is not None and sink_url.startswith("redis://"):
        entry = {"name": "stream", "type": "redis_stream", "url": sink_url, "maxlen": 10_000}
        sinks = json.dumps({"sinks": [entry]})
    elif sink_url is not None:
        sinks = json.dumps({"sinks": [{"name": "hook", "type": "webhook", "url": sink_url}]})
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(database_url=f"sqlite:///{tmp}/b.db", sinks=sinks)
        async with Engine(settings=settings) as engine:
            stored = await engine.submit(workflow())
            await engine.run(stored, {}, timeout=30)  # warm up
            wall, cpu = time.perf_counter(), time.process_time()
            started = await asyncio.gather(
                *(engine.start_execution(stored) for _ in range(executions))
            )
            for record in started:
                await engine.wait(record.id, timeout=120)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            drained = time.perf_counter()
            while sink_url is not None and await engine.store.outbox_size():
                await asyncio.sleep(0.01)
            drained = time.perf_counter() - drained
            return wall / executions, cpu / executions, drained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--sink",
        default="webhook",
        help="webhook (a receiver in another process) or a redis:// URL (a Redis Stream sink)",
    )
    args = parser.parse_args()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
    try:
        time.sleep(0.5)
        url = f"http://127.0.0.1:{port}/events" if args.sink == "webhook" else args.sink
        runs: dict[bool, list[tuple[float, float, float]]] = {False: [], True: []}
        for _ in range(args.repeat):
            for on in (False, True):
                runs[on].append(asyncio.run(_once(args.executions, url if on else None)))
    finally:
        receiver.terminate()
        receiver.wait(10)
    for on, label in ((False, "sinks off"), (True, "sinks on ")):
        wall = statistics.median(w for w, _, _ in runs[on]) * 1e3
        cpu = statistics.median(c for _, c, _ in runs[on]) * 1e3
        drain = statistics.median(d for _, _, d in runs[on])
        tail = f", outbox drained {drain:.2f} s after the last end" if on else ""
        print(f"{label}: wall {wall:.2f} ms, cpu {cpu:.2f} ms per execution{tail}")


if __name__ == "__main__":
    main()
