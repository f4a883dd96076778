"""The dead letter queue: task messages parked for a person, with a structured error.

The reaper parks a task that was delivered ``max_deliveries`` times without an answer (its
workers died or hung on it: a poison message), and a worker parks a message it cannot read (a
newer schema version). Parking does not fail the node: its attempt stays running, waiting for
an operator, who either retries the entry (the same attempt is sent to its task stream again)
or drops it (the attempt fails with category ``dead_letter``, so the execution carries on with
its retry policy, failure handling and compensation). Entries live in the ``{p}:dlq`` stream;
an entry's id is its stream id.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, cast

from orchestrion.cluster.connection import queue_errors
from orchestrion.cluster.streams import WORKER_GROUP, Entries, Fields, StreamNames, text
from orchestrion.cluster.wire import SCHEMA_VERSION, WireError, decode_task, encode_event, loads
from orchestrion.core.events import ErrorInfo, NodeFailed
from orchestrion.core.task_kinds import TaskKind
from orchestrion.errors import ErrorCategory, ExecutionNotFound

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["DeadLetter", "DeadLetters"]


@dataclass(slots=True)
class DeadLetter:
    """One parked message and why it was parked."""

    id: str
    stream: str
    category: str  # "delivery" (delivered too often) | "schema" (unreadable)
    message: str
    deliveries: int
    parked_at: float
    execution_id: str | None = None
    node_id: str | None = None
    attempt: int | None = None
    handler: str | None = None
    first_sent_at: float | None = None
    consumer: str | None = None
    traceback: str | None = None
    payload: str = ""  # the task message as it was sent

    def ids(self) -> tuple[str | None, str | None, int | None]:
        """Execution, node and attempt, each None unless of the right type: a letter copies
        them from the parked message, which may be anything (a message nobody could read)."""
        attempt = self.attempt
        if not isinstance(attempt, int) or isinstance(attempt, bool):
            attempt = None
        return _text(self.execution_id), _text(self.node_id), attempt

    def to_dict(self, *, with_payload: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not with_payload:
            data.pop("payload")
        return data


# Take the entry out of the DLQ and send its message on, only if this call removed it: two
# operators retrying or dropping the same letter at once cannot both act on it. With a third
# key, the attempt's guard, nothing is sent when the guard says the attempt already ended.
_TAKE_AND_SEND = """
if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then return false end
if KEYS[3] and redis.call('GET', KEYS[3]) == 'd' then return 'ended' end
if ARGV[2] == '' then return 'taken' end
return redis.call('XADD', KEYS[2], '*', 'm', ARGV[2])
"""


class DeadLetters:
    """Parks, lists, retries and drops dead letters (see the module docstring).

    What an operator calls (``count``, ``list``, ``get``, ``retry``, ``drop``) raises a
    Redis failure as ``DispatchError``; ``park``, called by the reaper's and workers' loops,
    leaves redis-py's errors to them.
    """

    def __init__(self, redis: Redis, names: StreamNames) -> None:
        self.redis = redis
        self.names = names

    async def park(
        self,
        stream: str,
        entry_id: bytes | str,
        data: dict[str, Any],
        payload: str,
        *,
        category: str,
        message: str,
        consumer: str | None = None,
        traceback: str | None = None,
    ) -> str:
        """Move a task entry to the DLQ: add the dead letter, acknowledge and delete the
        entry, in one transaction."""
        task = data.get("task") if isinstance(data.get("task"), dict) else {}
        assert isinstance(task, dict)
        letter = {
            "v": SCHEMA_VERSION,
            "stream": stream,
            "category": category,
            "message": message,
            "deliveries": int(data.get("deliveries", 1)),
            "parked_at": time.time(),
            "execution_id": task.get("execution_id"),
            "node_id": task.get("node_id"),
            "attempt": task.get("attempt"),
            "handler": task.get("handler"),
            "first_sent_at": data.get("first_sent_at", data.get("sent_at")),
            "consumer": consumer,
            "traceback": traceback,
            "payload": payload,
        }
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self.names.dlq, {"m": json.dumps(letter)})
            pipe.xack(stream, WORKER_GROUP, entry_id)
            pipe.xdel(stream, entry_id)
            added, *_ = await pipe.execute()
        return text(added)

    async def park_raw(
        self,
        stream: str,
        entry_id: bytes | str,
        raw: str,
        *,
        category: str,
        message: str,
        consumer: str | None = None,
    ) -> str:
        """Park a message that could not be read at all."""
        try:
            data = json.loads(raw)
        except ValueError:
            data = {}
        return await self.park(
            stream,
            entry_id,
            data if isinstance(data, dict) else {},
            raw,
            category=category,
            message=message,
            consumer=consumer,
        )

    async def count(self) -> int:
        with queue_errors():
            return int(await self.redis.xlen(self.names.dlq))

    async def list(self, limit: int = 100, after: str | None = None) -> list[DeadLetter]:
        """Oldest first; ``after`` is the id of the last entry of the previous page."""
        start = f"({after}" if after else "-"
        with queue_errors():
            entries = cast(
                Entries, await self.redis.xrange(self.names.dlq, min=start, max="+", count=limit)
            )
        return [_letter(entry_id, fields) for entry_id, fields in entries]

    async def get(self, entry_id: str) -> DeadLetter:
        with queue_errors():
            found = await self.redis.xrange(self.names.dlq, min=entry_id, max=entry_id)
        entries = cast(Entries, found)
        if not entries:
            raise ExecutionNotFound(f"no dead letter '{entry_id}'")
        return _letter(*entries[0])

    async def retry(self, entry_id: str) -> str:
        """Send the parked task to its stream again (deliveries start over); its new id."""
        letter = await self.get(entry_id)
        try:
            data = json.loads(letter.payload)
        except ValueError as exc:
            raise ValueError(f"dead letter {entry_id} is not a readable task message") from exc
        if not isinstance(data, dict) or "task" not in data:
            raise ValueError(f"dead letter {entry_id} is not a task message")
        data["deliveries"] = 1
        data["sent_at"] = time.time()
        added = await self._take(entry_id, letter.stream, json.dumps(data, separators=(",", ":")))
        return text(added)

    async def drop(self, entry_id: str) -> tuple[DeadLetter, bool]:
        """Remove the entry; its attempt fails (``dead_letter``) so the execution goes on.
        The flag: whether it did, False when the attempt had already ended (its guard says
        its outcome was sent: a copy of the task ran to its end after all)."""
        letter = await self.get(entry_id)
        message = ""
        if letter.execution_id and letter.node_id and letter.attempt:
            error = ErrorInfo(
                ErrorCategory.DEAD_LETTER,
                f"dropped from the dead letter queue ({letter.category}: {letter.message})",
                transient=False,
            )
            failed = NodeFailed(letter.node_id, int(letter.attempt), time.time(), error)
            message = encode_event(letter.execution_id, failed)
        guard = self._guard(letter) if message else None
        taken = await self._take(entry_id, self.names.completions, message, guard)
        return letter, bool(message) and text(taken) != "ended"

    def _guard(self, letter: DeadLetter) -> str | None:
        """The guard of the parked attempt; None for a compensation (it has none) or a
        message that does not read as a task."""
        try:
            task = decode_task(loads(letter.payload))
        except WireError:
            return None
        return self.names.guard_for(task) if task.kind == TaskKind.RUN else None

    async def _take(
        self, entry_id: str, stream: str, message: str, guard: str | None = None
    ) -> Any:
        """Remove the letter and add ``message`` to ``stream`` (nothing when empty, or when
        ``guard`` says the attempt ended: ``"ended"``), atomically; ``ExecutionNotFound``
        when another call took it first."""
        keys = [self.names.dlq, stream, *([guard] if guard else [])]
        with queue_errors():
            result = await self.redis.eval(_TAKE_AND_SEND, len(keys), *keys, entry_id, message)
        if result is None:
            raise ExecutionNotFound(f"no dead letter '{entry_id}' (retried or dropped meanwhile)")
        return result


def _letter(entry_id: bytes | str, fields: Fields) -> DeadLetter:
    data = json.loads(fields.get(b"m", b"{}"))
    return DeadLetter(
        id=text(entry_id),
        stream=data.get("stream", ""),
        category=data.get("category", "unknown"),
        message=data.get("message", ""),
        deliveries=int(data.get("deliveries", 0)),
        parked_at=float(data.get("parked_at", 0.0)),
        execution_id=data.get("execution_id"),
        node_id=data.get("node_id"),
        attempt=data.get("attempt"),
        handler=data.get("handler"),
        first_sent_at=data.get("first_sent_at"),
        consumer=data.get("consumer"),
        traceback=data.get("traceback"),
        payload=data.get("payload", ""),
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
