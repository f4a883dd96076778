"""The one-call Python API: ``orchestrion.run(definition, inputs)``."""

from __future__ import annotations

import asyncio
from typing import Any

from orchestrion.core.result import ExecutionResult
from orchestrion.engine.facade import Engine

__all__ = ["arun", "run"]


async def arun(
    definition: Any,
    inputs: dict[str, Any] | None = None,
    *,
    database_url: str | None = None,
    idempotency_key: str | None = None,
    timeout: float | None = None,
) -> ExecutionResult:
    """Run ``definition`` (path, YAML/JSON text, dict or ``WorkflowSpec``) to its end.

    State goes to ``database_url`` (default: ``ORCHESTRION_DATABASE_URL``, else
    ``./orchestrion.db``); pass ``"memory://"`` for a run that leaves nothing behind.
    """
    async with Engine(database_url) as engine:
        return await engine.run(
            definition, inputs, idempotency_key=idempotency_key, timeout=timeout
        )


def run(
    definition: Any,
    inputs: dict[str, Any] | None = None,
    *,
    database_url: str | None = None,
    idempotency_key: str | None = None,
    timeout: float | None = None,
) -> ExecutionResult:
    """Blocking form of ``arun``; inside a running event loop use ``await arun(...)``."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(
            arun(
                definition,
                inputs,
                database_url=database_url,
                idempotency_key=idempotency_key,
                timeout=timeout,
            )
        )
    raise RuntimeError("orchestrion.run() was called inside an event loop; use `await arun(...)`")
