"""The audit trail cross-checked against the journal it covers.

An engine with the trail on seals one record per journal event in the commit that writes the
event (``details.event_id`` names it), so the two are written together or not at all. From
the database alone, without an anchor, two facts hold whatever the trail's history:

- **An empty trail next to a journal is a break.** Records are never deleted (a retention
  purge deletes executions and their events, and adds a record of itself), so a trail with no
  record while the journal holds events was emptied, unless the trail was turned on after
  those events and nothing has been audited since (verify says so).
- **Once an execution is in the trail, all its later transitions are.** For every execution
  with at least one transition record, each journal event from its first audited one on must
  have its record: a missing one was deleted, or committed by a process without the audit
  key (a configuration every writer must avoid). Events before the first audited one are
  from before the trail was turned on, and not required.

What the database cannot tell apart is an execution that ran while the trail was off from one
whose every record was deleted (with the head rewound to a copy): no rule here flags
executions without any record. The anchor (``audit_anchor``) catches that case.

Pure functions over records and events already read: the caller reads the journal first and
the trail after, so every event it saw has its record committed already (same transaction).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from orchestrion.governance.audit_chain import AuditBreak

if TYPE_CHECKING:
    from orchestrion.store.audit import AuditRecord
    from orchestrion.store.base import EventRecord

__all__ = ["coverage_breaks"]


def _event_id(record: AuditRecord) -> str | None:
    details = record.details
    if details is None:
        return None
    value = details.get("event_id")
    return value if isinstance(value, str) else None


def _describe(event: EventRecord) -> str:
    node = f" node {event.node_id}" if event.node_id else ""
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(event.at))
    return f"{event.type} of execution {event.execution_id}{node} at {when} (event {event.id})"


def coverage_breaks(
    events: Iterable[EventRecord], records: Sequence[AuditRecord]
) -> list[AuditBreak]:
    """Breaks between the journal's ``events`` (in journal order) and the trail's ``records``
    (in seq order); see the module docstring."""
    last_seq = records[-1].seq if records else 0
    audited = {event_id for record in records if (event_id := _event_id(record))}
    covered: set[str] = set()
    missing: list[EventRecord] = []
    count = 0
    executions: set[str] = set()
    for event in events:
        count += 1
        executions.add(event.execution_id)
        if event.id in audited:
            covered.add(event.execution_id)
        elif event.execution_id in covered:
            missing.append(event)
    if not records and count:
        return [
            AuditBreak(
                1,
                "truncated",
                f"the trail is empty but the journal holds {count} event(s) of "
                f"{len(executions)} execution(s): its records were deleted (or the trail was "
                "turned on after them and nothing has been audited since)",
            )
        ]
    if not missing:
        return []
    return [
        AuditBreak(
            last_seq + 1,
            "missing",
            f"{len(missing)} transition(s) of executions the trail covers have no record, the "
            f"first {_describe(missing[0])}: deleted (with the head rewound), or committed by "
            "a process without the audit key",
        )
    ]
