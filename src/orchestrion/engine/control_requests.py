"""Cancel, pause, resume, approve and reject from another process on the same database.

In embedded mode the process that runs an execution (``orchestrion run``, ``serve``) owns
it; another process (a second terminal's ``orchestrion cancel``) cannot drive it. It records
the request in the journal instead (a ``control.requested`` event, which changes nothing
else), and the owner, which reads the journal's new requests every quarter of a second,
carries the verb out itself as if it had been asked directly. The requester waits until the
effect shows in the store (the execution cancelled, paused, resumed, the node decided).

A request is acted on by the process that owned the execution when it was made; one that
stops first (it ended, or was killed) leaves the request unanswered, and the requester says
so (``OwnerChanged``): the verb, run again, then goes to whoever holds the execution now (a
sibling that took it over, or the requester itself), which ``engine/control.py`` does.
The engines themselves journal one request: a child's end, for a parent another process
drives (``child_ended``, committed with the child's end: ``children.py``); the parent's owner
resolves the wait for it, and nobody waits for that.
Scale-out processes send these requests over the dispatcher instead (``forward``), and
orchestrators read the journal's requests too: a command given only the database
(``--db postgresql://...``, no Redis) reaches them that way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from orchestrion.core.control import cancel_request, pause_request
from orchestrion.core.states import FINAL_EXECUTION_STATES, ExecutionStatus, NodeState
from orchestrion.core.verbs import CROSS_PROCESS_VERBS, ControlVerb
from orchestrion.engine.children import CHILD_ENDED
from orchestrion.engine.ids import new_event_id
from orchestrion.errors import ControlPending, InvalidTransition, OrchestrionError
from orchestrion.store.base import EventRecord, ExecutionRecord
from orchestrion.store.rules import CONTROL_REQUESTED

if TYPE_CHECKING:
    from orchestrion.engine.children import ChildExecutions
    from orchestrion.engine.facade import Engine

__all__ = ["ControlRequests", "OwnerChanged"]

logger = logging.getLogger(__name__)

_POLL = 0.25  # how often an owner reads new requests (seconds)
_ACT_WITHIN = 10.0  # how long a requester waits for the owner to act (seconds)
# Requests committed out of seq order (PostgreSQL assigns seq before commit) are still seen:
# each read goes back this many seqs, and requests already handled are remembered.
_WINDOW = 1000
_PAGE = 500


class OwnerChanged(InvalidTransition):
    """The process asked to carry out a verb let the execution go before it acted."""


class ControlRequests:
    """Both sides of requests between processes: ``send`` (requester) and the owner's poll."""

    def __init__(self, engine: Engine, children: ChildExecutions) -> None:
        self._engine = engine
        self._children = children
        self._cursor = 0
        self._handled: dict[str, int] = {}  # request event id -> seq
        self._task: asyncio.Task[None] | None = None
        self._acting: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ owner side

    async def start(self) -> None:
        """Act from now on on requests made from now on."""
        self._cursor = await self._engine.store.journal_head()
        self._task = asyncio.create_task(self._poll_loop(), name="orchestrion-control-requests")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._acting) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        self._acting.clear()

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(_POLL)
            try:
                await self.poll()
            except OrchestrionError:
                logger.exception("reading control requests failed; retrying")

    async def poll(self) -> None:
        """Carry out the new requests about executions driven here."""
        store = self._engine.store
        head = await store.journal_head()
        after = self._cursor
        while True:
            page = await store.list_events(
                None, after_seq=after, limit=_PAGE, types=[CONTROL_REQUESTED]
            )
            for event in page:
                if event.id in self._handled:
                    continue
                self._handled[event.id] = event.seq
                if self._engine.is_live(event.execution_id):
                    task = asyncio.create_task(self._act(event))
                    self._acting.add(task)
                    task.add_done_callback(self._acting.discard)
            if len(page) < _PAGE:
                break
            after = page[-1].seq
        self._cursor = max(self._cursor, head - _WINDOW)
        self._handled = {k: seq for k, seq in self._handled.items() if seq > self._cursor}

    async def _act(self, event: EventRecord) -> None:
        request = event.data or {}
        verb, execution_id = request.get("verb"), event.execution_id
        engine = self._engine
        try:
            if verb == ControlVerb.CANCEL:
                reason = str(request.get("reason") or "cancelled")
                await engine.cancel(execution_id, reason, force=request.get("force") == "yes")
            elif verb == ControlVerb.PAUSE:
                await engine.pause(execution_id)
            elif verb == ControlVerb.RESUME:
                await engine.resume(execution_id)
            elif verb == CHILD_ENDED:
                await self._children.ended_elsewhere(execution_id, request.get("child"))
            elif verb in (ControlVerb.APPROVE, ControlVerb.REJECT):
                by, comment = request.get("by"), request.get("comment")
                await engine.decide(
                    execution_id,
                    str(request.get("node")),
                    approved=verb == ControlVerb.APPROVE,
                    by=by if isinstance(by, str) else None,
                    comment=comment if isinstance(comment, str) else None,
                )
        except OrchestrionError as exc:
            logger.warning(
                "request to %s execution %s not carried out: %s", verb, execution_id, exc
            )

    # ------------------------------------------------------------------ requester side

    async def send(self, record: ExecutionRecord, verb: ControlVerb, **args: Any) -> None:
        """Ask the owner of ``record`` to carry out ``verb``; return once it shows.

        Raises ``OwnerChanged`` when the owner let the execution go first,
        ``InvalidTransition`` when the request could not be carried out, ``ControlPending``
        when the owner does not act in time (it is stuck, or on a host whose clock or reach
        is not this one's): the request stays recorded, for the owner to act on later.
        """
        if verb not in CROSS_PROCESS_VERBS:
            raise ValueError(f"unknown control verb {verb!r}")
        store = self._engine.store
        execution_id, owner = record.id, record.owner
        before = await self._node_attempt(execution_id, args.get("node"))
        request = {"verb": str(verb), **args, "requested_by": self._engine.owner}
        signer = self._engine.audit.signer  # the request is a journal event: audited too
        await store.request_control(execution_id, new_event_id(), request, time.time(), signer)
        deadline = time.monotonic() + _ACT_WITHIN
        let_go: float | None = None
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            current = await store.get_execution(execution_id)
            forced = args.get("force") == "yes"
            if await self._shows(current, verb, args.get("node"), before, forced):
                return
            if current.owner == owner:
                continue
            # A process that took the execution over before it read the request acts on it
            # too: give it two polls, or the verb sent again would find the work done.
            let_go = time.monotonic() if let_go is None else let_go
            if time.monotonic() - let_go > 2 * _POLL:
                raise OwnerChanged(
                    f"cannot {verb} execution {execution_id}: the process running it let it "
                    f"go before acting on the request; run the command again"
                )
        raise ControlPending(
            f"{verb} of execution {execution_id} was requested, but the process running it "
            f"({owner}) has not acted on it within {_ACT_WITHIN:.0f} s; it stays requested"
        )

    async def _node_attempt(self, execution_id: str, node: Any) -> tuple[NodeState, int] | None:
        if not isinstance(node, str):
            return None
        for run in await self._engine.store.get_node_runs(execution_id):
            if run.node_id == node:
                return run.state, run.attempt
        return None

    async def _shows(
        self,
        current: ExecutionRecord,
        verb: ControlVerb,
        node: Any,
        before: tuple[NodeState, int] | None,
        forced: bool = False,
    ) -> bool:
        status = current.status
        if verb is ControlVerb.CANCEL:
            # Compensating: recorded, and it runs on; unless forced, which ends it cancelled.
            if not forced and cancel_request(current.error) is not None:
                return True
            if status in FINAL_EXECUTION_STATES and status is not ExecutionStatus.CANCELLED:
                raise InvalidTransition(
                    f"cannot cancel execution {current.id}: it is {status.value}"
                )
            return status is ExecutionStatus.CANCELLED
        if verb is ControlVerb.PAUSE:
            # Compensating: recorded, and it runs on (a compensation is not paused).
            if pause_request(current.error) is not None:
                return True
            return status is ExecutionStatus.PAUSED or status in FINAL_EXECUTION_STATES
        if verb is ControlVerb.RESUME:
            return status is not ExecutionStatus.PAUSED
        now = await self._node_attempt(current.id, node)
        return now != before or status in FINAL_EXECUTION_STATES
