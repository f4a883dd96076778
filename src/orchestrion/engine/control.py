"""Control verbs: cancel, pause, resume, approve or reject, retry, wherever the execution runs.

A verb on an execution driven here is an event posted to the loop. One driven by another
live process is sent to it: over the dispatcher in scale-out mode (``forward``), as a request
in the journal in embedded mode (``control_requests.py``). One nobody alive drives is claimed,
loaded and driven here.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from orchestrion.core.events import (
    CancelRequested,
    ErrorInfo,
    Event,
    PauseRequested,
    ResumeRequested,
    RetryRequested,
    WaitResolved,
)
from orchestrion.core.reasons import DECIDABLE_WAITS, WaitReason
from orchestrion.core.record_types import RecordType
from orchestrion.core.states import FINAL_EXECUTION_STATES, ExecutionStatus, NodeState
from orchestrion.core.verbs import ControlVerb, decision_verb
from orchestrion.dispatch.base import NotApplied
from orchestrion.engine import lineage
from orchestrion.engine.compiled import CompiledWorkflow
from orchestrion.engine.control_requests import OwnerChanged
from orchestrion.engine.deciders import Decider, check_decider
from orchestrion.engine.decision_answers import (
    ANSWER_SECONDS,
    decided_note,
    forward_decision,
    journal_refused,
    not_waiting,
    refuse,
)
from orchestrion.engine.live import LiveExecution
from orchestrion.engine.timers import arm_deadline
from orchestrion.engine.trigger_checks import check_from_node
from orchestrion.errors import ErrorCategory, ExecutionNotFound, InvalidTransition, no_such_node
from orchestrion.store.base import ExecutionRecord

if TYPE_CHECKING:
    from orchestrion.engine.children import ChildExecutions
    from orchestrion.engine.control_requests import ControlRequests
    from orchestrion.engine.parts import EngineParts
    from orchestrion.engine.recovery import Recovery

__all__ = ["ControlVerbs"]

_Target = LiveExecution | ExecutionRecord
_ROUNDS = 3  # how many owners in a row a verb follows when each lets the execution go


def _retry_under_way(execution_id: str) -> str:
    return f"cannot retry execution {execution_id}: a retry of it is already under way"


async def _until_held(verb: Callable[[], Awaitable[None]]) -> None:
    """Carry out ``verb``, again when the process it was sent to let the execution go
    before acting (it died, and a sibling's heartbeat took its executions over): the next
    round reads the execution again and goes to its new owner, or acts here."""
    for _ in range(_ROUNDS - 1):
        try:
            await verb()
            return
        except OwnerChanged:
            continue
    await verb()


class ControlVerbs:
    """The control verbs of one engine (see the module docstring)."""

    def __init__(
        self,
        parts: EngineParts,
        recovery: Recovery,
        requests: ControlRequests,
        children: ChildExecutions,
    ) -> None:
        self._parts = parts
        self._recovery = recovery
        self._requests = requests
        self._children = children

    async def cancel(self, execution_id: str, reason: str, force: bool = False) -> None:
        await _until_held(lambda: self._cancel(execution_id, reason, force))

    async def pause(self, execution_id: str) -> None:
        await _until_held(lambda: self._pause(execution_id))

    async def resume(self, execution_id: str) -> None:
        await _until_held(lambda: self._resume(execution_id))

    async def decide(
        self,
        execution_id: str,
        node_id: str,
        *,
        approved: bool,
        by: str | None,
        comment: str | None,
        decider: Decider | None,
    ) -> None:
        """See ``Engine.decide``."""
        await _until_held(
            lambda: self._decide(
                execution_id, node_id, approved=approved, by=by, comment=comment, decider=decider
            )
        )

    async def _cancel(self, execution_id: str, reason: str, force: bool) -> None:
        target = await self._target(execution_id, ControlVerb.CANCEL)
        forced = {"force": "yes"} if force else {}  # a request's values are text
        if await self._requested(target, ControlVerb.CANCEL, reason=reason, **forced):
            return
        await self._apply(target, CancelRequested(time.time(), reason, force))
        if isinstance(target, LiveExecution):
            await self._children.stopped()  # its children are cancelled before this returns

    async def _pause(self, execution_id: str) -> None:
        target = await self._target(execution_id, ControlVerb.PAUSE)
        if await self._requested(target, ControlVerb.PAUSE):
            return
        await self._apply(target, PauseRequested(time.time()))

    async def _resume(self, execution_id: str) -> None:
        target = await self._target(execution_id, ControlVerb.RESUME)
        status = target.machine.status if isinstance(target, LiveExecution) else target.status
        if status is not ExecutionStatus.PAUSED:
            raise InvalidTransition(
                f"execution {execution_id} is not paused (status {status.value})"
            )
        if await self._requested(target, ControlVerb.RESUME):
            return
        await self._apply(target, ResumeRequested(time.time()))

    async def _decide(
        self,
        execution_id: str,
        node_id: str,
        *,
        approved: bool,
        by: str | None,
        comment: str | None,
        decider: Decider | None,
    ) -> None:
        # The node is the definition's, whatever the state: an unknown one is named as such
        # (404), before the execution's state is (409), and before anything is claimed.
        self._parts.engine.check_accepting()
        compiled = await self._compiled_of(execution_id)
        index = compiled.plan.index.get(node_id)
        if index is None:
            raise ExecutionNotFound(no_such_node(execution_id, node_id, compiled.plan.index))
        target = await self._target(execution_id, decision_verb(approved))
        record = target.record if isinstance(target, LiveExecution) else target
        if isinstance(target, LiveExecution):
            run = target.machine.nodes[index]
            state, reason, attempt = run.state, run.wait_reason, run.attempt
        else:
            runs = await self._parts.engine.store.get_node_runs(execution_id)
            found = {r.node_id: r for r in runs}.get(node_id)
            state = found.state if found is not None else NodeState.PENDING
            reason = found.wait_reason if found is not None else None
            attempt = found.attempt if found is not None else 0
        if state is not NodeState.WAITING or reason not in DECIDABLE_WAITS:
            note = await decided_note(self._parts.engine, execution_id, node_id)
            said = not_waiting(execution_id, node_id, note or f"(it is {state.value})")
            if note.startswith("it was already"):  # another decision won: kept as refused
                late = {"approved": approved, "decided_by": by, "comment": comment}
                if decider is not None and decider.key_id is not None:
                    late |= {"decided_by": decider.label, "decided_by_key": decider.key_id}
                    late["decided_by_role"] = decider.role
                event = WaitResolved(node_id, attempt, time.time(), output=late, decision=True)
                await journal_refused(self._parts.engine, execution_id, event, said)
            raise InvalidTransition(said)
        config = {**compiled.plan.nodes[index].config, **record.overrides.get(node_id, {})}
        decision: dict[str, Any] = {
            "approved": approved,
            "decided_by": by,
            "comment": comment,
            "decided_at": time.time(),
        }
        if decider is not None:
            # The definition names who decides, never a start's overrides (refused since;
            # an execution stored before may still carry them).
            listed = compiled.plan.nodes[index].config.get("approvers")
            approvers = listed if reason == WaitReason.APPROVAL else None
            settings = self._parts.engine.settings
            routing = bool(compiled.plan.routing) and compiled.plan.routing[index]
            groups = settings.team_members() if routing else settings.decider_groups()
            check_decider(node_id, approvers, decider, groups, members_only=routing)
            if decider.key_id is not None:  # an open API knows no one: the name given stays
                by = decision["decided_by"] = decider.label
            decision["decided_by_key"] = decider.key_id
            decision["decided_by_role"] = decider.role
        verb = decision_verb(approved)
        # Driven by another embedded process: it decides, as asked (the caller checked here).
        if await self._requested(target, verb, node=node_id, by=by, comment=comment):
            return
        error = None
        if not approved and config.get("on_reject") != "continue":
            who = f" by {by}" if by else ""
            why = f": {comment}" if comment else ""
            error = ErrorInfo(ErrorCategory.REJECTED, f"rejected{who}{why}", transient=False)
        output: Any = decision
        if reason == "review" and error is None:
            # An approved review completes the node with the output that waited for it. The
            # machine may say "waiting" a moment before that record is committed: drain first.
            if isinstance(target, LiveExecution):
                await self._parts.loop.drain()
            waited = await self._wait_data(execution_id, node_id, attempt)
            output = {**(waited.get("output") or {}), "review": decision}
        event = WaitResolved(
            node_id, attempt, time.time(), output=output, error=error, decision=True
        )
        engine = self._parts.engine
        if isinstance(target, LiveExecution):
            try:  # delivered, so that a decision another request made meanwhile is told apart
                await self._parts.loop.deliver(execution_id, event)
            except NotApplied:
                raise await refuse(engine, execution_id, event) from None
            return
        cluster = self._parts.ownership.cluster
        assert cluster is not None  # embedded, another process's decides (``_requested``)
        await forward_decision(engine, cluster, self._parts.forward, execution_id, event)

    async def retry(self, execution_id: str, from_node: str | None) -> None:
        """See ``Engine.retry``."""
        self._parts.engine.check_accepting()
        record = await self._parts.engine.store.get_execution(execution_id)
        if from_node is not None:  # the definition's, whatever the state: named first (422)
            compiled = await self._parts.definitions.compiled_for(record.definition_id)
            check_from_node(compiled, execution_id, from_node)
        allowed = (
            FINAL_EXECUTION_STATES
            if from_node is not None
            else {ExecutionStatus.FAILED, ExecutionStatus.CANCELLED}
        )
        if record.status not in allowed:
            raise InvalidTransition(
                f"cannot retry execution {execution_id}: it is {record.status.value} "
                f"({'wait for it to finish' if from_node else 'only failed or cancelled ones'})"
            )
        loop = self._parts.loop
        live = loop.live.get(execution_id)
        if live is None and self._forwards(record):
            await self._forward_retry(execution_id, from_node)
            return
        if live is None:
            await self._parts.ownership.claim_for(record, ControlVerb.RETRY, expected=record.owner)
            live = await self._recovery.load(record.id)
        live = loop.install(live)
        try:  # delivered, so that a retry another request started meanwhile is told apart
            await loop.deliver(execution_id, RetryRequested(time.time(), from_node))
        except NotApplied:
            raise InvalidTransition(_retry_under_way(execution_id)) from None
        arm_deadline(live, time.time(), loop.post)

    async def _forward_retry(self, execution_id: str, from_node: str | None) -> None:
        """Hand a retry to the orchestrators (scale-out) and wait a moment for their answer,
        so that one their machine changed nothing with (another request's retry got there
        first) is refused as it is here. No answer within ``ANSWER_SECONDS`` (busy
        orchestrators, or one too old to answer) leaves it handed over, to be carried out."""
        cluster = self._parts.ownership.cluster
        if cluster is None:  # not scale-out: the forward says the execution is elsewhere
            await self._parts.forward(execution_id, RetryRequested(time.time(), from_node))
            return
        key = cluster.reply_key()
        retry = RetryRequested(time.time(), from_node, reply=key)
        await self._parts.forward(execution_id, retry)
        try:
            applied = await cluster.wait_reply(key, ANSWER_SECONDS)
        except Exception:  # the queue went away after taking the request: it is handed over
            return
        if applied is False:
            raise InvalidTransition(_retry_under_way(execution_id))

    async def adopt_lineage(self, execution_id: str) -> str:
        """See ``Engine.adopt_lineage``."""
        engine = self._parts.engine
        chain = await lineage.ancestors(engine, execution_id)
        root = chain[-1] if chain else execution_id
        for member in [*reversed(chain), *await lineage.descendants(engine, root)]:
            if member == execution_id or member in self._parts.loop.live:
                continue  # the execution itself is loaded by the verb that follows
            record = await engine.store.get_execution(member)
            if record.status in FINAL_EXECUTION_STATES:
                continue
            if not self._parts.ownership.held_elsewhere(record):
                await self._recovery.adopt(record)
        return root

    async def _compiled_of(self, execution_id: str) -> CompiledWorkflow:
        """The compiled definition of an execution, live here or stored (404 if unknown)."""
        live = self._parts.loop.live.get(execution_id)
        if live is not None:
            record = live.record
        else:
            record = await self._parts.engine.store.get_execution(execution_id)
        return await self._parts.definitions.compiled_for(record.definition_id)

    # ------------------------------------------------------------------ where a verb goes

    async def _target(self, execution_id: str, verb: ControlVerb) -> _Target:
        """The live execution to apply a control event to, or the record of one driven by
        another process (the event is then sent to it)."""
        self._parts.engine.check_accepting()
        live = self._parts.loop.live.get(execution_id)
        if live is not None:
            status = live.machine.status
            pending = status is ExecutionStatus.PENDING
            if live.machine.finished or (pending and verb is not ControlVerb.CANCEL):
                raise InvalidTransition(
                    f"cannot {verb} execution {execution_id}: it is {live.machine.status.value}"
                )
            return live
        record = await self._parts.engine.store.get_execution(execution_id)
        if record.status in FINAL_EXECUTION_STATES or (
            record.status is ExecutionStatus.PENDING and verb is not ControlVerb.CANCEL
        ):
            raise InvalidTransition(
                f"cannot {verb} execution {execution_id}: it is {record.status.value}"
            )
        if self._forwards(record):
            return record
        await self._parts.ownership.claim_for(record, verb, expected=record.owner)
        loaded = await self._recovery.load(record.id)
        live = self._parts.loop.install(loaded)
        if live is loaded and verb is not ControlVerb.CANCEL:
            # Driven here from now on: its timers (a delay beside an approval) are armed and
            # its attempts in flight sent again, as on any start, or it would wait forever. A
            # cancel ends what was in flight instead of sending it again first.
            await self._recovery.recover([live])
        return live

    def _forwards(self, record: ExecutionRecord) -> bool:
        """Whether control of ``record`` goes to another process instead of here: over the
        dispatcher (scale-out), or as a request in the journal (embedded, ``_requested``)."""
        drives = self._parts.engine.drives
        if self._parts.ownership.cluster is None:
            return drives and self._parts.ownership.held_elsewhere(record)
        return not drives or self._parts.ownership.held_elsewhere(record)

    async def _requested(self, target: _Target, verb: ControlVerb, **args: str | None) -> bool:
        """Embedded, with ``target`` run by another process: ask it through the journal and
        wait until it acted. False when the verb is for this process to carry out."""
        if isinstance(target, LiveExecution) or self._parts.ownership.cluster is not None:
            return False
        await self._requests.send(target, verb, **args)
        return True

    async def _apply(self, target: _Target, event: Event) -> None:
        """Apply a control event here and wait for its commit, or send it to the driver."""
        if isinstance(target, LiveExecution):
            await self._parts.loop.post_and_wait(target.record.id, event)
        else:
            await self._parts.forward(target.id, event)

    async def _wait_data(self, execution_id: str, node_id: str, attempt: int) -> dict[str, Any]:
        """The data of the node's latest ``node.waiting`` record for ``attempt``."""
        found: dict[str, Any] = {}
        after, size = 0, 1000
        store = self._parts.engine.store
        while True:
            page = await store.list_events(
                execution_id, after_seq=after, limit=size, types=[RecordType.NODE_WAITING]
            )
            for event in page:
                if event.node_id == node_id and event.attempt == attempt:
                    found = event.data or {}
            if len(page) < size:
                return found
            after = page[-1].seq
