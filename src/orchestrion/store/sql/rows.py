"""The SQL stores' tables as Python sees them: column lists, row mappers, parameter encoders.

Every SQL dialect reads and writes the same tables (``orchestrion.store.schema``), so the
columns each query names, how a row becomes a record and how a record becomes parameters are
written once, here. Values that are not scalars are stored as compact JSON text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.governance.trust import Trust
from orchestrion.json_text import quick_encode
from orchestrion.store import rules
from orchestrion.store.base import (
    DefinitionRecord,
    EventRecord,
    ExecutionRecord,
    LogLineRecord,
    NodeRunRecord,
)

__all__ = [
    "AUDIT_COLS",
    "DEF_COLS",
    "EVENT_COLS",
    "EXEC_COLS",
    "JOURNAL_COLS",
    "LOG_COLS",
    "LOG_LINE_COLS",
    "OUTPUT_STATES",
    "RUN_COLS",
    "UNFINISHED",
    "definition_of",
    "definition_params",
    "dumps",
    "event_of",
    "execution_of",
    "execution_params",
    "keys_term",
    "log_line_of",
    "marks",
    "node_run_of",
    "opt_json",
    "opt_loads",
    "positional",
    "sql_list",
]

dumps = quick_encode(json.JSONEncoder(separators=(",", ":"), ensure_ascii=False))
_loads = json.loads
# Stored states to members by a dict: calling the enum class runs its lookup in Python
# (several calls per row); an unknown value still gets the enum's own ValueError.
_EXECUTION_STATUS = {str.__str__(s): s for s in ExecutionStatus}
_NODE_STATE = {str.__str__(s): s for s in NodeState}

DEF_COLS = (
    "id, name, version, spec, content_hash, source_format, dialect, source, created_at, trust,"
    " status, created_by, status_changed_at, status_changed_by"
)
EXEC_COLS = (
    "id, definition_id, status, phase, inputs, overrides, result, error, idempotency_key,"
    " correlation_id, parent_execution_id, parent_node_id, labels, created_at, started_at,"
    " finished_at, updated_at, owner, lease_until, trust"
)
RUN_COLS = (
    "execution_id, node_id, state, attempt, started_at, finished_at, output, error,"
    " wait_reason, wake_at, compensation, updated_at"
)
# What a commit writes of a journal row (the database numbers ``seq``), in this order.
JOURNAL_COLS = "id, execution_id, node_id, type, attempt, at, correlation_id, causation_id, data"
EVENT_COLS = f"seq, {JOURNAL_COLS}"
# What a commit writes of a node log line (the database numbers ``seq``), and what is read.
LOG_COLS = "execution_id, node_id, attempt, at, level, logger, message"
LOG_LINE_COLS = f"seq, {LOG_COLS}"
AUDIT_COLS = (
    "seq, at, action, actor, execution_id, node_id, outcome, details, prev_hash, key_id, hash"
)


def marks(cols: str) -> str:
    """``:a, :b, ...``: the named parameters of a column list."""
    return ", ".join(f":{c.strip()}" for c in cols.split(","))


def positional(sql: str, names: Sequence[str]) -> str:
    """``sql`` with its ``:name`` parameters as ``?``, for a driver bound by position (the
    cheaper binding); they must stand in the order of ``names``, the order of the tuples."""
    found = re.findall(r":(\w+)", sql)
    if found != list(names):
        raise AssertionError(f"parameters {found} are not in the row order {list(names)}")
    return re.sub(r":\w+", "?", sql)


def sql_list(values: Sequence[str]) -> str:
    """A literal ``('a', 'b')`` list of known, quote-free constants (statuses, states)."""
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


UNFINISHED = sql_list([s.value for s in rules.UNFINISHED_STATUSES])
OUTPUT_STATES = sql_list([s.value for s in rules.OUTPUT_STATES])


def opt_json(value: Any) -> str | None:
    return None if value is None else dumps(value)


def opt_loads(text: str | None) -> Any:
    return None if text is None else _loads(text)


def definition_params(record: DefinitionRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "version": record.version,
        "spec": dumps(record.spec),
        "content_hash": record.content_hash,
        "source_format": record.source_format,
        "dialect": record.dialect,
        "source": record.source,
        "created_at": record.created_at,
        "trust": Trust.of(record.trust).value,
        "status": record.status,
        "created_by": record.created_by,
        "status_changed_at": record.status_changed_at,
        "status_changed_by": record.status_changed_by,
    }


def execution_params(record: ExecutionRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "definition_id": record.definition_id,
        "status": record.status.value,
        "phase": record.phase,
        "inputs": dumps(record.inputs),
        "overrides": dumps(record.overrides),
        "result": opt_json(record.result),
        "error": opt_json(record.error),
        "idempotency_key": record.idempotency_key,
        "correlation_id": record.correlation_id,
        "parent_execution_id": record.parent_execution_id,
        "parent_node_id": record.parent_node_id,
        "labels": dumps(record.labels),
        "created_at": record.created_at,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "updated_at": record.updated_at,
        "owner": record.owner,
        "lease_until": record.lease_until,
        "trust": Trust.of(record.trust).value,
        # Its end as a prefix, for the index that finds an execution by its last characters.
        "id_reversed": record.id[::-1],
    }


def definition_of(row: Sequence[Any]) -> DefinitionRecord:
    return DefinitionRecord(
        id=row[0],
        name=row[1],
        version=row[2],
        spec=_loads(row[3]),
        content_hash=row[4],
        source_format=row[5],
        dialect=row[6],
        source=row[7],
        created_at=row[8],
        trust=Trust.of(row[9]),
        status=row[10],
        created_by=row[11],
        status_changed_at=row[12],
        status_changed_by=row[13],
    )


def execution_of(row: Sequence[Any]) -> ExecutionRecord:
    return ExecutionRecord(
        id=row[0],
        definition_id=row[1],
        status=_EXECUTION_STATUS.get(row[2]) or ExecutionStatus(row[2]),
        phase=row[3],
        inputs=_loads(row[4]),
        overrides=_loads(row[5]),
        result=opt_loads(row[6]),
        error=opt_loads(row[7]),
        idempotency_key=row[8],
        correlation_id=row[9],
        parent_execution_id=row[10],
        parent_node_id=row[11],
        labels=_loads(row[12]),
        created_at=row[13],
        started_at=row[14],
        finished_at=row[15],
        updated_at=row[16],
        owner=row[17],
        lease_until=row[18],
        trust=Trust.of(row[19]),
    )


def node_run_of(row: Sequence[Any]) -> NodeRunRecord:
    return NodeRunRecord(
        execution_id=row[0],
        node_id=row[1],
        state=_NODE_STATE.get(row[2]) or NodeState(row[2]),
        attempt=row[3],
        started_at=row[4],
        finished_at=row[5],
        output=opt_loads(row[6]),
        error=opt_loads(row[7]),
        wait_reason=row[8],
        wake_at=row[9],
        compensation=row[10],
        updated_at=row[11],
    )


def event_of(row: Sequence[Any]) -> EventRecord:
    return EventRecord(
        seq=row[0],
        id=row[1],
        execution_id=row[2],
        node_id=row[3],
        type=row[4],
        attempt=row[5],
        at=row[6],
        correlation_id=row[7],
        causation_id=row[8],
        data=opt_loads(row[9]),
    )


def log_line_of(row: Sequence[Any]) -> LogLineRecord:
    """A ``LOG_LINE_COLS`` row as a record."""
    return LogLineRecord(
        int(row[0]), row[1], row[2], int(row[3]), float(row[4]), row[5], row[6], row[7]
    )


def keys_term(keys: list[str], params: dict[str, Any]) -> str:
    """The WHERE term of executions made with one of ``keys`` (their parameters added)."""
    if not keys:
        return "1 = 0"
    names = [f"ikey{i}" for i in range(len(keys))]
    params.update(zip(names, keys, strict=True))
    return f"idempotency_key IN ({', '.join(':' + name for name in names)})"
