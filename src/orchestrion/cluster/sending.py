"""Adding node attempts and compensations to the task streams, each once (the orchestrator's
guarded send).

Each task is added with a guard key set in the same Lua script: a takeover that recovers the
attempt, or the compensation under way, again adds nothing while the guard lives. A
compensation's guard names its round (``StreamNames.guard_for``): a retried execution that
fails again undoes its nodes anew. Adding a compensation also clears its cancel flag, which a
forced cancel of an earlier round may have left. Classified tasks are sealed first
(``cluster/on_wire.py``). One pipeline carries a whole turn's tasks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from orchestrion.cluster.connection import queue_errors
from orchestrion.cluster.streams import StreamNames
from orchestrion.cluster.wire import encode_event, encode_task
from orchestrion.core.events import Event
from orchestrion.core.task_kinds import TaskKind
from orchestrion.dispatch.base import TaskMessage

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from orchestrion.cluster.on_wire import WireSealer

__all__ = ["TaskSender", "engine_bound", "forward_event", "handler_name"]

# Add each task only if its guard was not set yet: one round trip for a whole turn, atomic.
# KEYS: guard and stream of task 1, of task 2...; ARGV: the payloads, then the guard's TTL.
_GUARDED_XADD = """
local n = #ARGV - 1
local added = 0
for i = 1, n do
  if redis.call('SET', KEYS[2 * i - 1], '1', 'NX', 'PX', ARGV[n + 1]) then
    redis.call('XADD', KEYS[2 * i], '*', 'm', ARGV[i])
    added = added + 1
  end
end
return added
"""
_SCRIPT_BATCH = 500  # tasks per script call: a long script blocks Redis for everyone else

# One compensation, guarded the same way. KEYS: guard, stream, cancel flag; ARGV: payload, TTL.
_GUARDED_COMPENSATION = """
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[2]) then
  redis.call('DEL', KEYS[3])
  redis.call('XADD', KEYS[2], '*', 'm', ARGV[1])
  return 1
end
return 0
"""


def engine_bound(task: TaskMessage, canonical: Callable[[str], str]) -> bool:
    """Whether the attempt needs the engine in its process (it starts child executions)."""
    handler = canonical(task.handler)
    if handler == "workflow":
        return True
    if handler == "map":
        inner = task.config.get("handler")
        return isinstance(inner, str) and canonical(inner) == "workflow"
    return False


def handler_name(canonical: Callable[[str], str], handler: str) -> str:
    """The canonical name of ``handler`` (the one its stream is named after), or the name as
    given when the registry does not know it (the worker reports it unknown)."""
    try:
        return canonical(handler)
    except Exception:
        return handler


async def forward_event(
    redis: Redis,
    names: StreamNames,
    sealer: WireSealer | None,
    owner: str | None,
    execution_id: str,
    event: Event,
) -> None:
    """Add ``event`` to ``owner``'s inbox, or to the shared completions stream when None,
    its payload sealed when there is a ``sealer``; ``DispatchError`` when Redis fails."""
    stream = names.inbox(owner) if owner else names.completions
    if sealer is not None:
        event = sealer.seal_event(execution_id, event)
    with queue_errors():
        await redis.xadd(stream, {"m": encode_event(execution_id, event)})


class TaskSender:
    """Sends attempts to their task streams through one client; see the module docstring."""

    def __init__(
        self,
        redis: Redis,
        names: StreamNames,
        *,
        guard_ms: int,
        canonical: Callable[[str], str],
        sealer: WireSealer | None = None,
    ) -> None:
        self.redis = redis
        self.names = names
        self._guard_ms = guard_ms
        self._canonical = canonical
        self._sealer = sealer
        self._script: Any = redis.register_script(_GUARDED_XADD)
        self._compensation_script: Any = redis.register_script(_GUARDED_COMPENSATION)

    async def send(self, tasks: list[TaskMessage], reply_to: str) -> None:
        """Add ``tasks``; workers answer on ``reply_to``. Redis errors propagate."""
        now = time.time()
        keys: list[str] = []
        payloads: list[str] = []
        sealer = self._sealer
        async with self.redis.pipeline(transaction=False) as pipe:
            for task in tasks:
                if sealer is not None:
                    task = sealer.seal_task(task)
                stream = self.names.tasks(
                    handler_name(self._canonical, task.handler), task.capabilities
                )
                payload = encode_task(task, reply_to=reply_to, deliveries=1, sent_at=now)
                if task.kind == TaskKind.RUN:
                    keys += (self.names.guard_for(task), stream)
                    payloads.append(payload)
                else:  # rare: one script each
                    flag = self.names.cancelled(
                        task.execution_id, task.node_id, task.attempt, task.kind
                    )
                    await self._compensation_script(
                        keys=[self.names.guard_for(task), stream, flag],
                        args=[payload, self._guard_ms],
                        client=pipe,
                    )
            for start in range(0, len(payloads), _SCRIPT_BATCH):
                await self._script(
                    keys=keys[2 * start : 2 * (start + _SCRIPT_BATCH)],
                    args=[*payloads[start : start + _SCRIPT_BATCH], self._guard_ms],
                    client=pipe,
                )
            await pipe.execute()
