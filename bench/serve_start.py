"""How long ``orchestrion serve`` takes to answer: spawn to first ``/health`` answer, and CPU.

    .venv/bin/python bench/serve_start.py                        # this checkout, 7 rounds
    .venv/bin/python bench/serve_start.py --src /old/src --src src --rounds 11

Each round starts one server per ``--src`` (a checkout's ``src`` folder, put first on the
path; by default this checkout's), in turn, so a slow phase of the machine falls on all of
them: on a fresh SQLite file, a free loopback port, default settings. The time runs from the
spawn to the first answer of ``GET /health`` (any status); the CPU is the server process's
user and system time at that moment, read from /proc (Linux). Medians are printed.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_once(src: Path) -> tuple[float, float]:
    """Seconds to the first answer, and the server's CPU seconds by then."""
    port = _free_port()
    with tempfile.TemporaryDirectory() as folder:
        env = dict(
            os.environ,
            ORCHESTRION_DATABASE_URL=f"sqlite:///{folder}/serve.db",
            PYTHONPATH=str(src),
        )
        command = [sys.executable, "-c", "from orchestrion.cli.app import main; main()"]
        started = time.perf_counter()
        server = subprocess.Popen(
            [*command, "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/health", timeout=0.5)
                    break
                except httpx.TransportError:
                    if server.poll() is not None:
                        message = f"the server of {src} exited with {server.returncode}"
                        raise SystemExit(message) from None
                    time.sleep(0.01)
            return time.perf_counter() - started, _cpu_seconds(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--src", action="append", type=Path, help="a checkout's src folder")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    sources: list[Path] = args.src or [ROOT / "src"]
    measured: dict[Path, list[tuple[float, float]]] = {src: [] for src in sources}
    for _ in range(args.rounds):
        for src in sources:
            measured[src].append(start_once(src))
    print(f"orchestrion serve, spawn to first /health answer, median of {args.rounds} rounds")
    for src, runs in measured.items():
        ready = statistics.median(r for r, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        print(f"  {src}: {ready:.3f} s, CPU {cpu:.2f} s")


if __name__ == "__main__":
    main()
