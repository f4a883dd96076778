"""Map progress across processes: workers write it to Redis, the API reads it.

In scale-out mode a ``map`` node's attempt runs in a worker, and the API, which drives
nothing, would never see the item counts it reports (``Resources.progress``). A worker keeps
them in one hash per execution (``<prefix>:progress:<execution>``, a field per node, the
counts as JSON), written at most every ``EVERY`` seconds and expiring ``KEEP`` seconds after
the last write, so nothing has to clean them up. They are counts for people: a write or a
read that fails is dropped, never an error of the run or of the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from orchestrion.cluster.streams import StreamNames

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["EVERY", "KEEP", "ProgressWriter", "progress_key", "read_progress"]

EVERY = 0.2
KEEP = 3600


def progress_key(names: StreamNames, execution_id: str) -> str:
    return f"{names.prefix}:progress:{execution_id}"


class ProgressWriter:
    """``report`` is a ``Resources.progress``: the latest counts per node, written in batches."""

    def __init__(self, redis: Callable[[], Redis], names: StreamNames) -> None:
        self._redis = redis
        self._names = names
        self._pending: dict[str, dict[str, str]] = {}
        self._task: asyncio.Task[None] | None = None

    def report(self, execution_id: str, node_id: str, counts: dict[str, int]) -> None:
        self._pending.setdefault(execution_id, {})[node_id] = json.dumps(counts)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        while self._pending:
            await asyncio.sleep(EVERY)
            pending, self._pending = self._pending, {}
            with contextlib.suppress(Exception):
                pipe = self._redis().pipeline(transaction=False)
                for execution_id, fields in pending.items():
                    key = progress_key(self._names, execution_id)
                    pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
                    pipe.expire(key, KEEP)
                await pipe.execute()

    async def close(self) -> None:
        """Write what is pending now (a stopping worker)."""
        if self._task is not None and not self._task.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, timeout=1.0)


async def read_progress(
    redis: Redis, names: StreamNames, execution_id: str
) -> dict[str, dict[str, int]]:
    """The counts workers last wrote for ``execution_id``'s map nodes ({} when unknown)."""
    try:
        raw = await redis.hgetall(progress_key(names, execution_id))
    except Exception:
        return {}
    found: dict[str, dict[str, int]] = {}
    for node, value in raw.items():
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            counts = json.loads(value)
            name = node.decode() if isinstance(node, bytes) else str(node)
            found[name] = {k: int(v) for k, v in counts.items()}
    return found
