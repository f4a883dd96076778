"""``orchestrion serve --workers N`` seen from outside, for the benches: its server
processes, their CPU, and a wait until every one of them answers.

The kernel hands each new connection on the shared port to one server process: the wait
opens fresh connections to /health until each process has answered one, found through
/proc (the server side of a connection is a socket one of the processes holds).
"""

from __future__ import annotations

import http.client
import time

from bench.proc_tree import children, holder
from bench.scaleout import cpu_seconds


def tree_cpu(pid: int) -> float:
    """CPU seconds so far of ``pid`` and of its server processes."""
    return cpu_seconds(pid) + sum(cpu_seconds(child) for child in children(pid))


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
                    answered = holder(port, conn.sock.getsockname()[1], pids)
                    if answered is not None:
                        seen.add(answered)
            except OSError:
                pass
            finally:
                conn.close()
            if seen >= set(pids):
                return
        time.sleep(0.05)
    raise SystemExit(f"not every one of {workers} server processes answered in {timeout} s")
