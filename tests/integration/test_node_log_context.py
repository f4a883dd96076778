"""A handler's own log lines carry the execution id, node id and correlation id."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

from orchestrion.engine.facade import Engine
from orchestrion.handlers.base import NodeContext
from orchestrion.handlers.python import function
from orchestrion.observability.logging_setup import JsonFormatter


@function("t_logs", replace=True)
def t_logs(ctx: NodeContext) -> str:
    logging.getLogger("user.code").warning("hello from %s", ctx.node_id)
    return "ok"


async def test_handler_log_lines_carry_the_node_and_execution() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("user.code")
    logger.addHandler(handler)
    try:
        async with Engine("memory://") as engine:
            record = await engine.start_execution(
                {
                    "name": "logs",
                    "dag": {
                        "nodes": [
                            {"id": "speak", "handler": "python", "config": {"function": "t_logs"}}
                        ]
                    },
                },
                correlation_id="req-123",
            )
            await engine.wait(record.id, timeout=5)
    finally:
        logger.removeHandler(handler)
    lines: list[dict[str, Any]] = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert lines and lines[0]["message"] == "hello from speak"
    assert lines[0]["execution_id"] == record.id
    assert lines[0]["node_id"] == "speak"
    assert lines[0]["correlation_id"] == "req-123"
