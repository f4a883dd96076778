"""Notices: what routing and error handling tell people, and the protocol of those who carry it.

A notice is decided by the machine (a routing rule's node fired, a failure halted the run),
journalled with the execution as an ``execution.notice`` event in the same commit as the
decision, and handed after that commit to the process's notice sinks (``NoticeSink``): a log
by default, outbound sinks (webhooks, streams) where configured. Its ``key`` is stable (the
execution, the node and the attempt that decided it), so a sink, or whoever it delivers to,
can drop a notice it has seen: delivery is at-least-once, the journalled notice exactly once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

__all__ = ["Notice", "NoticeKind", "NoticeSink", "journalled_notices", "notice_key"]


class NoticeKind(StrEnum):
    """Why a notice is sent."""

    ESCALATION = "escalation"  # a routing rule's `escalate`: to its target team
    ALERT = "alert"  # a routing rule's `alert`: to its recipients
    APPROVAL_REQUIRED = "approval_required"  # a `require_approval` gate waits for its approvers
    HALT = "halt"  # an error handling rule halted the execution


@dataclass(frozen=True, slots=True)
class Notice:
    """One notice to ``teams``; ``members`` and ``addresses`` are what the configuration says
    the teams are when it is delivered (API key names, and addresses such as ``mailto:``)."""

    key: str
    kind: str
    execution_id: str
    workflow: str
    rule: int | None
    teams: tuple[str, ...]
    message: str
    at: float
    node: str | None = None
    members: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "kind": self.kind,
            "execution_id": self.execution_id,
            "workflow": self.workflow,
            "rule": self.rule,
            "node": self.node,
            "teams": list(self.teams),
            "members": list(self.members),
            "addresses": list(self.addresses),
            "message": self.message,
            "at": self.at,
            "data": dict(self.data),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Notice:
        """Read back what ``to_dict`` wrote (the journal, a sink's queue)."""
        rule = data.get("rule")
        node = data.get("node")
        extra = data.get("data")
        return cls(
            key=str(data.get("key") or ""),
            kind=str(data.get("kind") or ""),
            execution_id=str(data.get("execution_id") or ""),
            workflow=str(data.get("workflow") or ""),
            rule=rule if isinstance(rule, int) and not isinstance(rule, bool) else None,
            teams=tuple(str(t) for t in data.get("teams") or ()),
            message=str(data.get("message") or ""),
            at=float(data.get("at") or 0.0),
            node=node if isinstance(node, str) else None,
            members=tuple(str(m) for m in data.get("members") or ()),
            addresses=tuple(str(a) for a in data.get("addresses") or ()),
            data=dict(extra) if isinstance(extra, Mapping) else {},
        )


def notice_key(execution_id: str, data: Mapping[str, Any]) -> str:
    """The stable key of the notice the machine journalled as ``data``: the execution, the
    node and the attempt that decided it, and its kind."""
    return f"{execution_id}:{data.get('node')}:{data.get('attempt', 0)}:{data.get('kind') or ''}"


def journalled_notices(execution_id: str, events: Sequence[Any]) -> tuple[dict[str, Any], ...]:
    """What ``execution.notice`` events (oldest first, with ``execution.notice_delivered``
    ones among them) say: each notice's kind, rule, node, teams, message, time, and whether
    every sink confirmed it."""
    confirmed = {
        e.data.get("key")
        for e in events
        if e.type == "execution.notice_delivered" and isinstance(e.data, Mapping)
    }
    found = []
    for event in events:
        data = event.data
        if event.type != "execution.notice" or not isinstance(data, Mapping):
            continue
        found.append(
            {
                "kind": str(data.get("kind") or ""),
                "rule": data.get("rule"),
                "node": data.get("node"),
                "teams": [str(t) for t in data.get("teams") or ()],
                "message": str(data.get("message") or ""),
                "at": event.at,
                "delivered": notice_key(execution_id, data) in confirmed,
            }
        )
    return tuple(found)


class NoticeSink(Protocol):
    """Carries notices somewhere (a log, a webhook, a stream).

    ``deliver`` is called after the notices are committed; raising makes the engine log the
    failure and try again later (a few times, with backoff): a sink must accept a notice it
    has already been given (same ``key``).
    """

    async def deliver(self, notices: Sequence[Notice]) -> None: ...
