"""Names of everything Orchestrion keeps in Redis, under one prefix.

- ``{p}:tasks:{handler}`` and ``{p}:tasks:{handler}+{cap}+{cap}``: task streams; a node with
  ``capabilities`` goes to the stream of its handler and sorted capabilities, which only
  workers declaring all of them read (consumer group ``workers``).
- ``{p}:completions``: the shared stream of events for executions (group ``orchestrators``):
  starts handed over by the API, control requests, and results whose orchestrator is gone.
- ``{p}:inbox:{owner}``: one orchestrator's own stream; workers send results there.
- ``{p}:dlq``: parked task messages with their structured error.
- ``{p}:guard:{execution}:{node}:{attempt}:{tag}``: set when an attempt, or a node's
  compensation (tag ``c{round}``), is dispatched, so a takeover does not dispatch it again.
- ``{p}:worker:{id}`` / ``{p}:orchestrator:{owner}`` / ``{p}:reaper:{host}:{pid}``:
  heartbeats (keys with a time to live).
- ``{p}:circuit:{handler}:{host}``: circuit breaker state shared by all workers.
- ``{p}:epoch``: a random value set once; when it is gone Redis lost its data (a restart
  without persistence) and orchestrators dispatch what was in flight again.
- ``{p}:cancelled:{execution}:{node}:{attempt}`` (``...:compensate`` for the node's
  compensation): set by a cancel, so a worker that reads the task later skips it.
- ``{p}:reply:{token}``: the answer to one forwarded request (a retry or a decision:
  applied or not), a list its requester pops, short-lived.
- ``{p}:decision:{execution}:{node}:{attempt}``: the decision under way for a node's wait
  (``replies.hold_decision``): a second one is refused while it is there.
- ``{p}:cancel`` and ``{p}:commits``: pub/sub channels; cancels for workers (an attempt's, or
  a compensation's abandoned by a forced cancel), and the ids of executions just committed,
  which wake the API's event streams.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING, Any

from orchestrion.core.task_kinds import TaskKind

if TYPE_CHECKING:
    from orchestrion.dispatch.base import TaskMessage

__all__ = [
    "ORCHESTRATOR_GROUP",
    "WORKER_GROUP",
    "Entries",
    "Fields",
    "StreamNames",
    "StreamReply",
    "capability_sets",
    "text",
]

Fields = dict[Any, Any]  # bytes -> bytes; Any so redis-py accepts it back
Entries = list[tuple[bytes, Fields]]
StreamReply = list[tuple[bytes, Entries]]
"""What XREADGROUP answers (redis-py without ``decode_responses``), as mypy should see it."""

WORKER_GROUP = "workers"
ORCHESTRATOR_GROUP = "orchestrators"


@dataclass(frozen=True, slots=True)
class StreamNames:
    """Key names under ``prefix`` (``ORCHESTRION_REDIS_PREFIX``, default ``orchestrion``)."""

    prefix: str = "orchestrion"

    @property
    def completions(self) -> str:
        return f"{self.prefix}:completions"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}:dlq"

    @property
    def epoch(self) -> str:
        return f"{self.prefix}:epoch"

    @property
    def inbox_pattern(self) -> str:
        return f"{self.prefix}:inbox:*"

    @property
    def task_pattern(self) -> str:
        return f"{self.prefix}:tasks:*"

    @property
    def worker_pattern(self) -> str:
        return f"{self.prefix}:worker:*"

    @property
    def orchestrator_pattern(self) -> str:
        return f"{self.prefix}:orchestrator:*"

    def reaper(self, name: str) -> str:
        return f"{self.prefix}:reaper:{name}"

    def inbox(self, owner: str) -> str:
        return f"{self.prefix}:inbox:{owner}"

    def owner_of_inbox(self, stream: str) -> str:
        return stream[len(f"{self.prefix}:inbox:") :]

    def tasks(self, handler: str, capabilities: Iterable[str] = ()) -> str:
        caps = sorted(set(capabilities))
        suffix = "+" + "+".join(caps) if caps else ""
        return f"{self.prefix}:tasks:{handler}{suffix}"

    def guard(self, execution_id: str, node_id: str, attempt: int, tag: str) -> str:
        return f"{self.prefix}:guard:{execution_id}:{node_id}:{attempt}:{tag}"

    def guard_for(self, task: TaskMessage) -> str:
        """The guard of this dispatch of ``task``: a woken attempt (its wait ran out) is
        dispatched again with the same attempt number, so the wake time tells them apart; a
        compensation shares its node's attempt number, and a retried execution that fails
        again compensates that attempt again, so its round tells them apart."""
        if task.kind == TaskKind.COMPENSATE:
            tag = f"c{task.compensation_round}"
        elif task.wait_result:
            tag = f"w{task.wait_result.get('wake_at') or 0}"
        else:
            tag = "r"
        return self.guard(task.execution_id, task.node_id, task.attempt, tag)

    def cancelled(self, execution_id: str, node_id: str, attempt: int, kind: str = "run") -> str:
        """The cancel flag of an attempt, or (``kind`` ``compensate``) of the node's
        compensation, which shares its node and attempt number but is stopped apart."""
        key = f"{self.prefix}:cancelled:{execution_id}:{node_id}:{attempt}"
        return key if kind == "run" else f"{key}:{kind}"

    def reply(self, token: str) -> str:
        """A list a requester blocks on for the orchestrator's answer to its request."""
        return f"{self.prefix}:reply:{token}"

    def decision(self, execution_id: str, node_id: str, attempt: int) -> str:
        """The hold of the one decision under way for a node's wait (``hold_decision``)."""
        return f"{self.prefix}:decision:{execution_id}:{node_id}:{attempt}"

    @property
    def cancel_channel(self) -> str:
        return f"{self.prefix}:cancel"

    @property
    def commits_channel(self) -> str:
        """Pub/sub: the ids of executions an orchestrator just committed records for."""
        return f"{self.prefix}:commits"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}:worker:{worker_id}"

    def orchestrator(self, owner: str) -> str:
        return f"{self.prefix}:orchestrator:{owner}"

    def circuit(self, handler: str, host: str) -> str:
        return f"{self.prefix}:circuit:{handler}:{host}"

    @property
    def circuit_pattern(self) -> str:
        return f"{self.prefix}:circuit:*"


def capability_sets(capabilities: Iterable[str]) -> Iterator[tuple[str, ...]]:
    """Every subset of a worker's capabilities, the empty one first: the node capability
    sets it can serve."""
    caps = sorted(set(capabilities))
    for size in range(len(caps) + 1):
        yield from combinations(caps, size)


def text(value: object) -> str:
    """A Redis reply value (bytes) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)
