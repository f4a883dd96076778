"""Side-effecting node functions for the crash tests (imported by the subprocess by dotted path)."""

from __future__ import annotations

import os
import time
from typing import Any


def slow_effect(ctx: Any, log: str, seconds: float = 0.2) -> dict[str, Any]:
    """Append a start line, sleep, append an end line: the log shows every real execution."""
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"start {ctx.node_id} {ctx.attempt} {ctx.idempotency_key}\n")
        fh.flush()
        os.fsync(fh.fileno())
    time.sleep(seconds)
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"end {ctx.node_id} {ctx.attempt} {ctx.idempotency_key}\n")
        fh.flush()
        os.fsync(fh.fileno())
    return {"node": ctx.node_id}
