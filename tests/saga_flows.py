"""Saga definitions the tests share: a node whose compensation takes a while, then a failure.

``a`` completes, ``b`` fails, and ``a``'s compensation (the ``sleep`` test function) then
runs for ``undo_seconds``: time for a test to pause, cancel or time what it sees meanwhile.
"""

from __future__ import annotations

from typing import Any

__all__ = ["slow_undo_saga"]


def slow_undo_saga(
    name: str, undo_seconds: float, retry: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The two-node saga; ``b`` has one attempt unless ``retry`` says otherwise."""
    return {
        "name": name,
        "dag": {
            "nodes": [
                {
                    "id": "a",
                    "handler": "noop",
                    "compensate": {
                        "handler": "python",
                        "config": {"function": "sleep", "params": {"seconds": undo_seconds}},
                    },
                },
                {
                    "id": "b",
                    "handler": "python",
                    "dependencies": ["a"],
                    "retry": retry or {"max_attempts": 1},
                    "config": {"function": "fail", "params": {"message": "b went wrong"}},
                },
            ]
        },
    }
