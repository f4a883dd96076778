"""A parent workflow (``release``) whose ``workflow`` node runs a child (``sign``) that waits
for a person's approval: the pair the tests of a child's end reaching its parent submit."""

from __future__ import annotations

from typing import Any

__all__ = ["RELEASE", "sign"]


def sign(**ask: Any) -> dict[str, Any]:
    """The child: an approval (its config ``ask``), then a node saying who decided."""
    approval: dict[str, Any] = {"id": "ask", "handler": "approval"}
    if ask:
        approval["config"] = ask
    return {
        "name": "sign",
        "dag": {
            "nodes": [
                approval,
                {
                    "id": "signed",
                    "handler": "noop",
                    "dependencies": ["ask"],
                    "config": {"value": "by {{ ask.output.decided_by }}"},
                },
            ]
        },
    }


RELEASE: dict[str, Any] = {
    "name": "release",
    "dag": {
        "nodes": [
            {"id": "sub", "handler": "workflow", "config": {"workflow": "sign"}},
            {
                "id": "ship",
                "handler": "noop",
                "dependencies": ["sub"],
                "config": {"value": "{{ sub.output.result }}"},
            },
        ]
    },
}
