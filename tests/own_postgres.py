"""A PostgreSQL server of a test's own, for tests that restart or stop the server.

The shared server on 127.0.0.1:5432 serves every other test running at the same time (the
suite runs files in parallel workers), so a test that restarts PostgreSQL starts its own
cluster from the local binaries (``initdb``, ``pg_ctl``) on a free port, in a directory of
its own, and stops it afterwards. As root, the cluster runs as the ``postgres`` user, as
PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


def _bindir() -> str | None:
    found = shutil.which("pg_config")
    if found:
        out = subprocess.run([found, "--bindir"], capture_output=True, text=True, check=False)
        bindir = out.stdout.strip()
        if os.path.exists(os.path.join(bindir, "initdb")):
            return bindir
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return os.path.dirname(candidates[0]) if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class OwnPostgres:
    """A running private cluster: its URL, and a restart that other tests never feel."""

    bindir: str
    datadir: str
    port: int
    user: str | None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [os.path.join(self.bindir, args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def _pg_ctl(self, verb: str) -> None:
        options = f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1 -c fsync=off"
        # -l: the server writes its log there, not to our pipes, which would stay open.
        log = os.path.join(self.datadir, "server.log")
        self._run("pg_ctl", verb, "-D", self.datadir, "-l", log, "-m", "fast", "-w", "-o", options)

    def start(self) -> None:
        self._pg_ctl("start")

    def restart(self) -> None:
        self._pg_ctl("restart")

    def stop(self) -> None:
        self._run("pg_ctl", "stop", "-D", self.datadir, "-m", "immediate", "-w")


def available() -> str | None:
    """Why no private cluster can be started here, or None when one can."""
    if _bindir() is None:
        return "no PostgreSQL server binaries (initdb, pg_ctl) on this machine"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and no postgres user to run PostgreSQL as"
        if shutil.which("runuser") is None:
            return "running as root and no runuser to run PostgreSQL as postgres"
    return None


@contextmanager
def own_postgres() -> Iterator[OwnPostgres]:
    """Start a fresh cluster (trust authentication, fsync off), stop and remove it after."""
    bindir = _bindir()
    assert bindir is not None, available()
    user = "postgres" if os.geteuid() == 0 else None
    datadir = tempfile.mkdtemp(prefix="orchestrion-pg-")
    if user is not None:
        record = pwd.getpwnam(user)
        os.chown(datadir, record.pw_uid, record.pw_gid)
    server = OwnPostgres(bindir, datadir, _free_port(), user)
    try:
        server._run("initdb", "-D", datadir, "-A", "trust", "-U", "postgres", "--no-sync")
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(datadir, ignore_errors=True)
