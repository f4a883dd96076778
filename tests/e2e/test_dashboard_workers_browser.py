"""The web dashboard in a real headless Chromium against ``orchestrion serve --workers 2``.

The browser's connections land on either server process, as the kernel hands them out: its
sign-in holds in both, and an execution page follows live a run driven by either process,
whichever one serves its event stream. Which process holds each of the browser's connections
is read from ``/proc`` (``bench/proc_tree.py``), to show that both served it; an idle service
hands most new connections to one process, so that one is held stopped while the browser
opens its second page.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from bench.proc_tree import holder
from test_dashboard_browser import (  # noqa: F401 (fixtures)
    ADMIN,
    KEYS,
    browser,
    no_script_errors,
    node_state,
    open_execution,
    sign_in,
    until,
)
from workers_server import Pinned, WorkersServer

pytestmark = pytest.mark.slow

STEPS = {
    "name": "steps",
    "dag": {
        "nodes": [
            {"id": "one", "handler": "delay", "config": {"seconds": 0.6}},
            {"id": "two", "handler": "delay", "config": {"seconds": 0.6}, "dependencies": ["one"]},
            {"id": "three", "handler": "noop", "dependencies": ["two"]},
        ]
    },
}
ESTABLISHED = "01"  # the state column of /proc/net/tcp


def _client_ports(server_port: int) -> set[int]:
    """The peers' ports of the established connections to ``server_port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if int(local.split(":")[1], 16) == server_port and state == ESTABLISHED:
                found.add(int(remote.split(":")[1], 16))
    return found


def _serving(server: WorkersServer) -> set[int]:
    """The server processes that hold one of the browser's connections now (called while the
    test holds none of its own)."""
    pids = server.children()
    held = (holder(server.port, port, pids) for port in _client_ports(server.port))
    return {pid for pid in held if pid is not None}


def _call(server: WorkersServer, pid: int, path: str, body: Any) -> Any:
    """POST through server process ``pid`` (a connection of its own, closed after)."""
    through = Pinned.to(server, pid, ADMIN)
    try:
        status, answer, _ = through.call("POST", path, body)
    finally:
        through.close()
    assert status in (201, 202), answer
    return answer


def _follow(page: Any, server: WorkersServer, pid: int, execution_id: str) -> None:
    """Trigger the run through process ``pid`` and see the open page follow it to its end."""
    from selenium.webdriver.common.by import By

    _call(server, pid, f"/v1/workflow/trigger/{execution_id}", {})
    # Live, without a reload: each node turns green as the driving process commits it.
    for node in ("one", "two", "three"):
        until(
            lambda n=node: node_state(page, n) == "COMPLETED",
            f"{node} green in the run process {pid} drives",
            seen=page,
        )
    until(
        lambda: page.find_element(By.ID, "x-status").text == "COMPLETED",
        "the run's badge",
        seen=page,
    )


def test_the_dashboard_follows_runs_of_either_process(
    browser: Any,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.by import By

    server = WorkersServer(tmp_path, tmp_path / "dash.db", env={"ORCHESTRION_API_KEYS": KEYS})
    try:
        processes = server.children()
        runs = [_call(server, pid, "/v1/workflow", STEPS)["execution_id"] for pid in processes]
        sign_in(browser, server, "adm-key")
        open_execution(browser, server, runs[0])
        served = _serving(server)
        _follow(browser, server, processes[0], runs[0])
        served |= _serving(server)

        # An idle service hands most new connections to one process (the one that wakes
        # first): hold those that served so far stopped while the browser opens the next page,
        # once its kept-alive connections were closed (uvicorn: after 5 s idle).
        browser.get("about:blank")
        time.sleep(6)
        held = sorted(served) if served != set(processes) else []
        for pid in held:
            os.kill(pid, signal.SIGSTOP)
        try:
            open_execution(browser, server, runs[1])
            served |= _serving(server)
        finally:
            for pid in held:
                os.kill(pid, signal.SIGCONT)
        _follow(browser, server, processes[1], runs[1])
        assert served == set(processes), (served, processes)
        assert browser.find_element(By.ID, "who").text  # signed in, whoever answered
    finally:
        assert server.stop() == 0, server.log.read_text()
