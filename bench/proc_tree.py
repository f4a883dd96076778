"""The server processes of ``orchestrion serve --workers N`` seen through ``/proc``: which they
are, and which of them holds the server side of a TCP connection.

Shared by the benches (``bench/serve_tree.py``) and the end-to-end tests
(``tests/e2e/workers_server.py``); standard library only, so either imports it without the
other.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["children", "holder"]


def children(pid: int) -> list[int]:
    """The live children of ``pid`` that are server processes (not multiprocessing's
    resource tracker, not zombies), in pid order."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces or ")"
        if int(fields[1]) == pid and fields[0] != "Z" and b"resource_tracker" not in cmdline:
            found.append(int(entry))
    return sorted(found)


def holder(server_port: int, client_port: int, pids: list[int]) -> int | None:
    """Which of ``pids`` holds the server side of the local connection from ``client_port``
    to ``server_port`` (the one that accepted it); None when none does (yet)."""
    inode = _server_inode(server_port, client_port)
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return pid
            except OSError:
                continue
    return None


def _server_inode(server_port: int, client_port: int) -> int | None:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], int(fields[9])
            if (
                inode
                and int(local.split(":")[1], 16) == server_port
                and int(remote.split(":")[1], 16) == client_port
            ):
                return inode
    return None
