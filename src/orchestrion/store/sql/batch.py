"""How a ``CommitBatch`` becomes rows: the encoding every SQL dialect writes.

``encode_batch`` runs before the transaction opens, so the write lock is held only for the
inserts and an unencodable output fails before anything is written. Rows are positional
tuples (the cheapest thing a driver binds), in the column orders named below; node-run upserts
are coalesced to one row per node, the last snapshot of the batch, keeping the last output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrion.core.events import Record
from orchestrion.core.states import FINAL_EXECUTION_STATES, NodeState
from orchestrion.errors import StoreError
from orchestrion.store import rules
from orchestrion.store.base import CommitBatch
from orchestrion.store.sql.rows import dumps, opt_json

__all__ = [
    "RUN_CONFLICT",
    "RUN_ROW",
    "SET_RESULT",
    "UPDATE_EXECUTION",
    "UPDATE_ROW",
    "EncodedBatch",
    "encode_batch",
]

# A node-run row: the node_runs columns (rows.RUN_COLS), then whether it carries an output
# (without one the stored output stays: a node.compensated record must not erase it).
RUN_ROW = (
    "execution_id",
    "node_id",
    "state",
    "attempt",
    "started_at",
    "finished_at",
    "output",
    "error",
    "wait_reason",
    "wake_at",
    "compensation",
    "updated_at",
    "has_output",
)
# An execution update: flags before values, (set finished?, finished_at), (set error?, error),
# and "final?" twice, once per ownership column it clears.
UPDATE_ROW = (
    "status",
    "phase",
    "started_at",
    "set_finished",
    "finished_at",
    "set_error",
    "error",
    "final",
    "final",
    "at",
    "id",
)

# A final status clears the ownership lease in the same statement, so commit costs no extra
# query. The parameters stand in the order of UPDATE_ROW.
UPDATE_EXECUTION = (
    "UPDATE executions SET status = :status, phase = COALESCE(:phase, phase),"
    " started_at = COALESCE(:started_at, started_at),"
    " finished_at = CASE WHEN :set_finished THEN :finished_at ELSE finished_at END,"
    " error = CASE WHEN :set_error THEN :error ELSE error END,"
    " owner = CASE WHEN :final THEN NULL ELSE owner END,"
    " lease_until = CASE WHEN :final THEN NULL ELSE lease_until END,"
    " updated_at = :at WHERE id = :id"
)
SET_RESULT = "UPDATE executions SET result = :result WHERE id = :id"
# How a node run upsert updates the stored row; each dialect adds how the output is kept.
RUN_CONFLICT = (
    "ON CONFLICT (execution_id, node_id) DO UPDATE SET state = excluded.state,"
    " attempt = excluded.attempt, started_at = excluded.started_at,"
    " finished_at = excluded.finished_at, error = excluded.error,"
    " wait_reason = excluded.wait_reason, wake_at = excluded.wake_at,"
    " compensation = excluded.compensation, updated_at = excluded.updated_at"
)

# Journal data of a node record that carries nothing but its new state, per state.
_PLAIN_NODE_DATA = {state: dumps({"state": state.value}) for state in NodeState}


@dataclass(slots=True)
class EncodedBatch:
    """A batch as rows: journal rows (``rows.JOURNAL_COLS``), node runs (``RUN_ROW``),
    execution updates (``UPDATE_ROW``), results ``(result, id)``, node log lines
    (``rows.LOG_COLS``), and every execution the batch is about (each must exist, and be held
    by the committing owner)."""

    events: list[tuple[Any, ...]]
    runs: list[tuple[Any, ...]]
    updates: list[tuple[Any, ...]]
    results: list[tuple[Any, ...]]
    touched: set[str]
    logs: list[tuple[Any, ...]]
    outbox: bool = False  # the journal rows go to the outbox too (store/outbox.py)


def encode_batch(batch: CommitBatch) -> EncodedBatch:
    records = batch.records
    rules.check_batch(batch)
    events: list[tuple[Any, ...]] = []
    updates: list[tuple[Any, ...]] = []
    # (execution, node) -> [last record, last record carrying an output or None]
    latest: dict[tuple[str, str], list[Any]] = {}
    correlation = batch.correlation
    plain = _PLAIN_NODE_DATA
    for (execution_id, record), event_id, cause in zip(
        records, batch.event_ids, batch.causation, strict=True
    ):
        node = record.node
        data: str | None
        if node is not None:
            if rules.plain_node_record(record) and record.state is not None:
                data = plain[record.state]  # the common case: no dict, no dumps
            else:
                data = dumps(rules.node_event_data(record))
            key = (execution_id, node)
            slot = latest.get(key)
            if slot is None:
                latest[key] = [record, record if record.has_output else None]
            else:
                slot[0] = record
                if record.has_output:
                    slot[1] = record
        else:
            data = opt_json(record.data)  # the machine's own dicts: always encodable
            if record.type not in rules.JOURNAL_ONLY:
                updates.append(_execution_update(record, execution_id))
        events.append(
            (
                event_id,
                execution_id,
                node,
                record.type,
                record.attempt,
                record.at,
                correlation.get(execution_id),
                cause,
                data,
            )
        )
    runs = [
        (
            execution_id,
            node,
            None if last.state is None else last.state.value,
            last.attempt,
            last.started_at,
            last.finished_at,
            None if with_output is None else _encode_output(execution_id, with_output),
            opt_json(last.error),
            last.wait_reason,
            last.wake_at,
            last.extra.get("compensation"),
            last.at,
            with_output is not None,
        )
        for (execution_id, node), (last, with_output) in latest.items()
    ]
    try:
        results = [(opt_json(result), eid) for eid, result in batch.results.items()]
    except (TypeError, ValueError) as exc:
        raise StoreError(f"execution result is not JSON-serialisable: {exc}") from exc
    touched = {execution_id for execution_id, _ in records}
    touched.update(batch.results)
    logs = rules.log_rows(batch) if batch.logs else []
    if logs:
        touched.update(execution_id for execution_id, _ in batch.logs)
    return EncodedBatch(events, runs, updates, results, touched, logs, batch.outbox)


def _execution_update(record: Record, execution_id: str) -> tuple[Any, ...]:
    finished = rules.finished_at(record)
    error = rules.execution_error(record)
    final = record.status in FINAL_EXECUTION_STATES
    return (
        None if record.status is None else record.status.value,
        record.phase,
        record.at if record.type == rules.STARTED else None,
        finished is not rules.KEEP,
        None if finished is rules.KEEP else finished,
        error is not rules.KEEP,
        None if error is rules.KEEP else opt_json(error),
        final,
        final,
        record.at,
        execution_id,
    )


def _encode_output(execution_id: str, record: Record) -> str | None:
    try:
        return opt_json(record.output)
    except (TypeError, ValueError) as exc:
        raise StoreError(
            f"output of node '{record.node}' in execution '{execution_id}'"
            f" is not JSON-serialisable: {exc}"
        ) from exc
