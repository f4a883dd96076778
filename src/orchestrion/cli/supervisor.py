"""The supervisor of ``orchestrion up``: its child processes, started, healed and stopped.

Each child's output goes to ``up``'s stderr behind its role, or to ``<log-dir>/<role>.log``. A
child that dies is started again (after a short back-off when it keeps dying at once). A stop
(SIGTERM or Ctrl-C) goes stage by stage: the API first, then the orchestrators and workers,
the reaper last, each stage within the shutdown grace (what is still running then is killed);
a second signal kills at once.

A child is ``python -c "...child_main()" <command> ...`` with this interpreter: the
``orchestrion`` script may not be on PATH (nor beside the interpreter), and ``child_main``,
before it runs the command line, asks Linux for a SIGTERM when ``up`` dies, so even a
``kill -9`` of ``up`` leaves no orphans behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from asyncio import FIRST_COMPLETED
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO

from orchestrion.cli.exits import EXIT_STORE

__all__ = ["Child", "Topology", "child_main"]

_TICK = 0.1  # seconds between looks at the children
_STEADY = 10.0  # a child that ran this long is restarted at once; sooner, with back-off
_BACKOFF = 0.5
_MAX_BACKOFF = 10.0
_STAGES = ("api", "orchestrators and workers", "reaper")  # the order of a stop

_BOOTSTRAP = "from orchestrion.cli.supervisor import child_main; child_main()"


def child_main() -> None:
    """Entry point of a child: the ``orchestrion`` command line, stopped when ``up`` dies."""
    if sys.platform == "linux":
        try:
            import ctypes

            ctypes.CDLL(None).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
        except (AttributeError, OSError):
            pass
        if str(os.getppid()) != os.environ.get("ORCHESTRION_UP_PID", str(os.getppid())):
            sys.exit(0)  # `up` died before the request above
    from orchestrion.cli.app import main

    sys.argv[0] = "orchestrion"
    main()


@dataclass
class Child:
    """One child process of ``up``: its role, its command, and the process running it."""

    role: str  # "api", "orchestrator-1", "worker-2", "reaper", "migrate"
    args: list[str]  # the orchestrion command line: ["worker", "--concurrency", "16"]
    stage: int  # when it is stopped: an index of _STAGES
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    restarts: int = 0
    fast_exits: int = 0  # exits in a row that came sooner than _STEADY after the start
    restart_at: float | None = None  # when a restart is due
    abandoned: bool = False  # died under --no-restart

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    @property
    def died(self) -> bool:
        """Exited, and neither restarted nor given up on yet."""
        return (
            self.process is not None
            and self.process.returncode is not None
            and self.restart_at is None
            and not self.abandoned
        )

    def signal(self, sig: int) -> None:
        if self.running and self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)

    async def wait(self) -> None:
        if self.process is not None:
            await self.process.wait()


def _describe(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"exit status {returncode}"


@dataclass
class Topology:
    """The children of ``up`` and the loop that starts, heals and stops them."""

    children: list[Child]
    env: dict[str, str]
    api_url: str
    grace: float
    startup_timeout: float
    restart: bool = True
    log_dir: Path | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    force: asyncio.Event = field(default_factory=asyncio.Event)  # a second signal: no waiting
    _pumps: set[asyncio.Task[None]] = field(default_factory=set)

    async def run(self) -> int:
        """Migrate, start everything, supervise until a signal, stop; the exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal)
        code = await self._migrate()
        if code is not None:
            return code
        self.note(f"starting {', '.join(child.role for child in self.children)}")
        for child in self.children:
            await self._start(child)
        healthy = asyncio.create_task(self._wait_for_api())
        code = 0
        while not self.stop.is_set():
            await self._supervise()
            if healthy.done() and not healthy.result():
                self.note(f"the API did not answer {self.api_url}/health in time; stopping")
                code = EXIT_STORE
                break
            await self._tick()
        healthy.cancel()
        await self._stop_all()
        if self._pumps:
            await asyncio.wait(self._pumps, timeout=2)  # the last lines of each child
        return code

    def _on_signal(self) -> None:
        if self.stop.is_set() and not self.force.is_set():
            self.note("a second signal: no more waiting")
            self.force.set()
        self.stop.set()

    async def _tick(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), _TICK)

    def note(self, message: str) -> None:
        """A line of ``up``'s own on stderr, in the same layout as the children's."""
        now = datetime.now().isoformat(" ", timespec="milliseconds")
        self._write(sys.stderr.buffer, self._prefix("up"), f"{now} {message}\n".encode())

    def _prefix(self, role: str) -> bytes:
        width = max(len(child.role) for child in self.children)
        return f"{role:<{width}} | ".encode()

    @staticmethod
    def _write(stream: IO[bytes], prefix: bytes, data: bytes) -> None:
        stream.write(b"".join(prefix + line for line in data.splitlines(keepends=True)))
        stream.flush()

    async def _start(self, child: Child) -> None:
        child.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _BOOTSTRAP,
            *child.args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self.env,
            # Its own process group: a Ctrl-C at the terminal reaches `up` alone, which then
            # stops the children in order instead of all of them at once.
            process_group=0,
        )
        child.started_at = asyncio.get_running_loop().time()
        pump = asyncio.create_task(self._pump(child.role, child.process))
        self._pumps.add(pump)
        pump.add_done_callback(self._pumps.discard)

    async def _pump(self, role: str, process: asyncio.subprocess.Process) -> None:
        """Copy the child's output, line by line, to its log file or behind its role."""
        assert process.stdout is not None
        if self.log_dir is not None:
            stream: IO[bytes] = (self.log_dir / f"{role}.log").open("ab")
            prefix = b""
        else:
            stream, prefix = sys.stderr.buffer, self._prefix(role)
        pending = b""
        try:
            while chunk := await process.stdout.read(65536):
                lines, sep, pending = (pending + chunk).rpartition(b"\n")
                if sep:
                    self._write(stream, prefix, lines + sep)
            if pending:
                self._write(stream, prefix, pending + b"\n")
        finally:
            if stream is not sys.stderr.buffer:
                stream.close()

    async def _migrate(self) -> int | None:
        """Run ``migrate`` to the end: None when it succeeded, else the exit code of ``up``."""
        child = Child("migrate", ["migrate"], stage=0)
        await self._start(child)
        assert child.process is not None
        while child.running and not self.stop.is_set():
            await self._tick()
        if child.running:  # a signal came first
            child.signal(signal.SIGTERM)
            await child.process.wait()
            return 0
        if child.process.returncode != 0:
            self.note(f"migrate failed ({_describe(child.process.returncode)}); nothing started")
            return EXIT_STORE
        return None

    async def _wait_for_api(self) -> bool:
        import httpx

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.startup_timeout
        # trust_env=False: a proxy from the environment must not answer for a local port.
        async with httpx.AsyncClient(timeout=1.0, trust_env=False) as client:
            while loop.time() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.api_url}/health")).status_code == 200:
                        self._print_table()
                        return True
                await asyncio.sleep(0.2)
        return False

    def _print_table(self) -> None:
        width = max(len(child.role) for child in self.children)
        lines = [f"{'ROLE':<{width}}  PID"]
        lines += [f"{child.role:<{width}}  {child.pid}" for child in self.children]
        lines.append(f"API: {self.api_url}  (docs: {self.api_url}/docs; Ctrl-C stops all)")
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()

    async def _supervise(self) -> None:
        now = asyncio.get_running_loop().time()
        for child in self.children:
            if child.restart_at is not None and now >= child.restart_at:
                child.restart_at = None
                child.restarts += 1
                await self._start(child)
                self.note(f"{child.role} restarted: pid {child.pid} (restart {child.restarts})")
            elif child.died:
                assert child.process is not None
                gone = f"{child.role} (pid {child.pid}) died: {_describe(child.process.returncode)}"
                if not self.restart:
                    child.abandoned = True
                    self.note(f"{gone}; not restarted (--no-restart)")
                    continue
                # Restart at once after a long run; a child dying at start-up (a port in use,
                # a database down) is retried ever more slowly instead of in a tight loop.
                child.fast_exits = 0 if now - child.started_at >= _STEADY else child.fast_exits + 1
                delay = 0.0
                if child.fast_exits:
                    delay = min(_BACKOFF * 2 ** (child.fast_exits - 1), _MAX_BACKOFF)
                child.restart_at = now + delay
                self.note(f"{gone}; restarting in {delay:g} s")

    @staticmethod
    async def _exited(group: list[Child]) -> None:
        await asyncio.gather(*(child.wait() for child in group))

    async def _forced(self) -> None:
        await self.force.wait()

    async def _stop_all(self) -> None:
        """Stop stage by stage: SIGTERM, the grace to exit, then SIGKILL for what is left.

        Each stage has a grace of its own, so a slow API does not eat the time the workers
        need to finish their attempts.
        """
        for stage, name in enumerate(_STAGES):
            group = [child for child in self.children if child.stage == stage and child.running]
            if not group:
                continue
            self.note(f"stopping the {name} (SIGTERM)")
            for child in group:
                child.signal(signal.SIGTERM)
            waits = [asyncio.create_task(self._exited(group)), asyncio.create_task(self._forced())]
            await asyncio.wait(waits, timeout=self.grace, return_when=FIRST_COMPLETED)
            for task in waits:
                task.cancel()
            for child in group:
                if child.running:
                    self.note(f"{child.role} (pid {child.pid}) still running: SIGKILL")
                    child.signal(signal.SIGKILL)
            await self._exited(group)
        self.note("stopped")
