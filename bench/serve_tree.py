"""``orchestrion serve --workers N`` seen from outside, for the benches: its server
processes, their CPU, and a wait until every one of them answers.

The kernel hands each new connection on the shared port to one server process: the wait
opens fresh connections to /health until each process has answered one, found through
/proc (the server side of a connection is a socket one of the processes holds).
"""

from __future__ import annotations

import http.client
import os
import time
from pathlib import Path

from bench.scaleout import cpu_seconds


def children(pid: int) -> list[int]:
    """The server processes of the ``serve`` process ``pid`` (multiprocessing's tracker
    aside)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"resource_tracker" not in cmdline:
            found.append(int(entry))
    return found


def tree_cpu(pid: int) -> float:
    """CPU seconds so far of ``pid`` and of its server processes."""
    return cpu_seconds(pid) + sum(cpu_seconds(child) for child in children(pid))


def _answered_by(port: int, client_port: int, pids: list[int]) -> int | None:
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if int(local.split(":")[1], 16) == port and int(remote.split(":")[1], 16) == client_port:
            inode = f"socket:[{fields[9]}]"
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == inode:
                    return pid
            except OSError:
                continue
    return None


def wait_all_serving(pid: int, port: int, workers: int, timeout: float = 120) -> None:
    """Return once each of the ``workers`` server processes of ``pid`` answered /health."""
    deadline = time.monotonic() + timeout
    seen: set[int] = set()
    while time.monotonic() < deadline:
        pids = children(pid)
        if len(pids) == workers:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                conn.request("GET", "/health")
                if conn.getresponse().read() and conn.sock is not None:
                    holder = _answered_by(port, conn.sock.getsockname()[1], pids)
                    if holder is not None:
                        seen.add(holder)
            except OSError:
                pass
            finally:
                conn.close()
            if seen >= set(pids):
                return
        time.sleep(0.05)
    raise SystemExit(f"not every one of {workers} server processes answered in {timeout} s")
