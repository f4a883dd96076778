"""Which executions ``EncryptedStore`` seals and what of them, on the in-memory store: every
node of a classified execution, a parent once a classified child answers it (and after a
restart), the whole of an error but its kind, and a handler's own wait ``reason``."""

from __future__ import annotations

import json
import time
from typing import Any

from orchestrion.core.events import Record
from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.governance.encryption import KeyRing, is_encrypted
from orchestrion.store.base import CommitBatch, DefinitionRecord, ExecutionRecord
from orchestrion.store.encrypted import EncryptedStore, context, open_error, seal_error
from orchestrion.store.memory import MemoryStore

RING = KeyRing.from_env(f"k1:{KeyRing.generate_key()}")
SECRET = "SECRET-MARKER-rules"
_SEQ = iter(range(1, 1_000_000))


def encrypts(classification: str) -> bool:
    return classification in ("pii", "phi")


async def store_with(*definitions: tuple[str, list[dict[str, Any]]]) -> EncryptedStore:
    inner = MemoryStore()
    await inner.open()
    for definition_id, nodes in definitions:
        await inner.put_definition(
            DefinitionRecord(
                definition_id,
                definition_id,
                "1",
                {"name": definition_id, "dag": {"nodes": nodes}},
                definition_id,
                "yaml",
                "canonical",
                time.time(),
            )
        )
    return EncryptedStore(inner, RING, encrypts)


CLASSIFIED = (
    "classified",
    [
        {"id": "input", "handler": "input", "data_classification": "public"},
        {"id": "count", "handler": "noop", "data_classification": "public"},
        {"id": "flag", "handler": "noop", "data_classification": "pii"},
    ],
)
PLAIN = (
    "plain",
    [
        {"id": "kid", "handler": "workflow", "data_classification": "public"},
        {"id": "after", "handler": "noop", "data_classification": "public"},
    ],
)


def execution(eid: str, definition: str, **fields: Any) -> ExecutionRecord:
    return ExecutionRecord(eid, definition, ExecutionStatus.RUNNING, time.time(), **fields)


def completed(node: str, output: Any) -> Record:
    return Record(
        "node.completed",
        time.time(),
        node=node,
        attempt=1,
        state=NodeState.COMPLETED,
        output=output,
        has_output=True,
    )


async def commit(store: EncryptedStore, eid: str, *records: Record) -> None:
    batch = CommitBatch()
    for record in records:
        batch.add(eid, record, f"ev-{next(_SEQ)}", None)
    await store.commit(batch)


async def raw_outputs(store: EncryptedStore, eid: str) -> dict[str, Any]:
    return {run.node_id: run.output for run in await store.inner.get_node_runs(eid)}


async def test_every_node_of_a_classified_execution_is_sealed_public_ones_too() -> None:
    store = await store_with(CLASSIFIED)
    await store.create_execution(execution("e1", "classified", inputs={"who": SECRET}))
    await commit(store, "e1", completed("input", {"who": SECRET}), completed("count", 3))
    raw = await raw_outputs(store, "e1")
    assert is_encrypted(raw["input"]) and is_encrypted(raw["count"])
    assert SECRET not in json.dumps(raw)
    assert await store.get_outputs("e1") == {"input": {"who": SECRET}, "count": 3}
    assert store.classified("e1")


async def test_a_parent_is_sealed_from_its_classified_childs_start_and_after_a_restart() -> None:
    store = await store_with(CLASSIFIED, PLAIN)
    await store.create_execution(execution("p", "plain", inputs={"who": SECRET}))
    await commit(store, "p", completed("after", "before the child"))
    assert not store.classified("p")
    child = execution("c", "classified", parent_execution_id="p", parent_node_id="kid")
    await store.create_execution(child)
    assert store.classified("p")  # the child's result will come back into it
    await commit(store, "p", completed("kid", {"child_execution_id": "c", "result": SECRET}))
    raw = await raw_outputs(store, "p")
    assert raw["after"] == "before the child"  # written before: as it was
    assert is_encrypted(raw["kid"])
    # Another process (a restart) knows nothing yet: the sealed output is the parent's mark.
    again = EncryptedStore(store.inner, RING, encrypts)
    await commit(again, "p", completed("after", f"after {SECRET}"))
    assert is_encrypted((await raw_outputs(again, "p"))["after"])


async def test_a_childs_result_or_failure_seals_a_parent_that_did_not_start_it_here() -> None:
    store = await store_with(CLASSIFIED, PLAIN)
    await store.create_execution(execution("p", "plain"))
    await store.inner.create_execution(execution("c", "classified"))  # started elsewhere
    fresh = EncryptedStore(store.inner, RING, encrypts)
    await commit(fresh, "p", completed("kid", {"child_execution_id": "c", "result": SECRET}))
    assert is_encrypted((await raw_outputs(fresh, "p"))["kid"])
    await fresh.create_execution(execution("p2", "plain"))
    failed = Record(
        "node.failed",
        time.time(),
        node="kid",
        attempt=1,
        state=NodeState.FAILED,
        error={"category": "child_failed", "message": f"child execution c failed: {SECRET}"},
    )
    await commit(fresh, "p2", failed)
    (run,) = await fresh.inner.get_node_runs("p2")
    assert run.error is not None and SECRET not in json.dumps(run.error)
    assert run.error["category"] == "child_failed"


async def test_an_unclassified_execution_with_an_unclassified_child_stays_plain() -> None:
    store = await store_with(PLAIN, ("leaf", [{"id": "x", "handler": "noop"}]))
    await store.create_execution(execution("p", "plain"))
    await store.create_execution(execution("c", "leaf", parent_execution_id="p"))
    await commit(store, "p", completed("kid", {"child_execution_id": "c", "result": "ok"}))
    assert (await raw_outputs(store, "p"))["kid"] == {"child_execution_id": "c", "result": "ok"}


async def test_a_handlers_own_wait_reason_is_sealed_the_engines_is_not() -> None:
    store = await store_with(CLASSIFIED)
    await store.create_execution(execution("e1", "classified"))
    waiting = Record(
        "node.waiting",
        time.time(),
        node="count",
        attempt=1,
        state=NodeState.WAITING,
        wait_reason="approval",
        data={"reason": "approval", "message": SECRET},
    )
    overridden = Record(
        "node.waiting",
        time.time(),
        node="flag",
        attempt=1,
        state=NodeState.WAITING,
        wait_reason="custom",
        data={"reason": f"because {SECRET}"},
    )
    await commit(store, "e1", waiting, overridden)
    raw = await store.inner.list_events("e1")
    assert SECRET not in json.dumps([e.data for e in raw])
    assert raw[0].data is not None and raw[0].data["reason"] == "approval"
    opened = await store.list_events("e1")
    assert opened[0].data is not None and opened[0].data["message"] == SECRET
    assert opened[1].data is not None and opened[1].data["reason"] == f"because {SECRET}"


def test_an_error_keeps_only_its_kind_readable() -> None:
    error = {
        "category": "input",
        "type": "PermanentNodeError",
        "transient": False,
        "message": "missing",
        "details": {"missing": [SECRET]},
        "nodes": ["a"],
    }
    ctx = context("e1", "n", "error")
    sealed = seal_error(RING, error, ctx)
    assert set(sealed) == {"category", "type", "transient", "message"}
    assert SECRET not in json.dumps(sealed)
    assert open_error(RING, sealed, ctx) == error


async def test_the_engines_records_keep_their_plaintext_and_the_stored_copy_its_fields() -> None:
    store = await store_with(CLASSIFIED)
    await store.create_execution(execution("e1", "classified"))
    record = completed("count", {"who": SECRET})
    record.started_at, record.finished_at, record.extra = 1.0, 2.0, {"compensation": "done"}
    await commit(store, "e1", record)
    assert record.output == {"who": SECRET}  # listeners are handed the original
    (run,) = await store.inner.get_node_runs("e1")
    assert is_encrypted(run.output)
    assert (run.state, run.attempt, run.started_at, run.finished_at, run.compensation) == (
        NodeState.COMPLETED,
        1,
        1.0,
        2.0,
        "done",
    )
