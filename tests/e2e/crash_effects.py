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


def keyed_effect(ctx: Any, effects: str, seconds: float = 0.0) -> dict[str, Any]:
    """An idempotent downstream: apply the effect once per idempotency key (an exclusive file
    create), however often the attempt is delivered; every delivery is logged too."""
    key = ctx.idempotency_key.replace(":", "_")
    with open(os.path.join(effects, "deliveries.log"), "a", encoding="utf-8") as fh:
        fh.write(f"{key}\n")
    if seconds:
        time.sleep(seconds)
    try:
        fd = os.open(os.path.join(effects, key), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return {"node": ctx.node_id, "duplicate": True}
    os.close(fd)
    return {"node": ctx.node_id}


def logged_effect(ctx: Any, log: str, seconds: float = 0.0) -> dict[str, Any]:
    """One appended line per real execution; a SIGKILL keeps what the kernel was given."""
    if seconds:
        time.sleep(seconds)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{ctx.node_id} {ctx.attempt}\n".encode())
    finally:
        os.close(fd)
    return {"node": ctx.node_id}
