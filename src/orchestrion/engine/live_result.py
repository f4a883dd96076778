"""What the store holds of an execution this engine drove from its start to its end.

Such an execution has every record it made committed by the time it ends: a turn acts on
nothing, a waiter included, before its commit, and a failed commit drops the execution from
the loop (a reloaded one is another ``LiveExecution``, whose result is read from the store).
The store's rows are what those records made of them (``store/rules.py``): each node's run is
its last record with the output of its last record that carried one, and the execution's row
is its created record with every execution record applied in order, and the result of its
completion. ``committed_record`` and ``committed_runs`` build the same rows from the records
the engine kept, so the result of such an execution is not read back. Values are copied as
JSON, as the SQL stores give them back (a tuple becomes a list, a key a string), and are the
caller's own.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, cast

from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.engine.live import LiveExecution
from orchestrion.store.base import ExecutionRecord, NodeRunRecord
from orchestrion.store.rules import apply_execution_record

__all__ = ["committed_record", "committed_runs", "stored_copy"]

# Values JSON gives back as they are (a float exactly, by its repr): no copy needed.
_AS_STORED = frozenset({str, int, float, bool})


def stored_copy(value: Any) -> Any:
    """``value`` as a SQL store reads it back: a JSON copy, unless it is a plain scalar."""
    if value is None or type(value) in _AS_STORED:
        return value
    return json.loads(json.dumps(value))


def committed_record(live: LiveExecution) -> ExecutionRecord:
    """The execution's row as the store holds it (module docstring)."""
    record = replace(live.record)
    for execution_record in live.execution_records:
        apply_execution_record(record, execution_record)
    record.error = stored_copy(record.error)
    if record.status is ExecutionStatus.COMPLETED:  # stored by the turn that completed it
        record.result = stored_copy(live.compiled.result_from(live.outputs))
    return record


def committed_runs(live: LiveExecution) -> list[NodeRunRecord]:
    """The execution's node runs as the store holds them (module docstring)."""
    execution_id, outputs = live.record.id, live.outputs
    return [
        NodeRunRecord(
            execution_id,
            node,
            cast(NodeState, last.state),  # a node record always carries its state
            last.attempt,
            last.started_at,
            last.finished_at,
            stored_copy(outputs.get(node)),
            stored_copy(last.error),
            last.wait_reason,
            last.wake_at,
            last.extra.get("compensation"),
            last.at,
        )
        for node, last in live.node_records.items()
    ]
