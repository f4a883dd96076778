"""``EncryptedStore`` defines every ``Store`` method itself: nothing reaches the adapter
unencrypted by falling through to it, and a method added to the protocol must be given a
sealing decision here (seal, open, or hand over as it is) before this test passes."""

from __future__ import annotations

import json
import time
from typing import Any

from orchestrion.core.states import ExecutionStatus
from orchestrion.governance.encryption import KeyRing, is_encrypted
from orchestrion.store.base import DefinitionRecord, ExecutionRecord, Store
from orchestrion.store.encrypted import EncryptedStore
from orchestrion.store.memory import MemoryStore

RING = KeyRing.from_env(f"k1:{KeyRing.generate_key()}")
SECRET = "SECRET-MARKER-methods"


def protocol_methods() -> set[str]:
    return {
        name for name, value in vars(Store).items() if callable(value) and not name.startswith("_")
    }


def test_the_protocol_is_read() -> None:
    assert {"commit", "get_outputs", "request_control", "purge_executions"} <= protocol_methods()


def test_every_store_method_is_defined_by_the_encrypted_store_itself() -> None:
    missing = sorted(name for name in protocol_methods() if name not in vars(EncryptedStore))
    assert not missing, f"EncryptedStore must define (seal, open or hand over): {missing}"


def test_nothing_falls_through_to_the_inner_store() -> None:
    assert "__getattr__" not in vars(EncryptedStore)
    assert "__getattribute__" not in vars(EncryptedStore)


async def store_with(classification: str) -> EncryptedStore:
    """An encrypted store holding execution ``e1`` of a workflow of one node."""
    inner = MemoryStore()
    await inner.open()
    nodes = [{"id": "flag", "handler": "approval", "data_classification": classification}]
    spec = {"name": "wf", "dag": {"nodes": nodes}}
    now = time.time()
    await inner.put_definition(
        DefinitionRecord("d", "wf", "1", spec, "h", "yaml", "canonical", now)
    )
    store = EncryptedStore(inner, RING, lambda c: c == "pii")
    await store.create_execution(ExecutionRecord("e1", "d", ExecutionStatus.RUNNING, now))
    return store


async def request(store: EncryptedStore, eid: str, **args: Any) -> dict[str, Any]:
    """The stored data of a control request, as the adapter holds it."""
    await store.request_control(eid, f"req-{eid}", {"verb": "approve", **args}, 1.0)
    (raw,) = await store.inner.list_events(eid, types=["control.requested"])
    return raw.data or {}


async def test_a_control_request_of_a_classified_execution_is_sealed_but_its_verb() -> None:
    store = await store_with("pii")
    raw = await request(store, "e1", node="flag", by=SECRET, comment=SECRET)
    assert SECRET not in json.dumps(raw)
    assert raw["verb"] == "approve" and raw["node"] == "flag" and is_encrypted(raw["sealed"])
    (event,) = await store.list_events("e1", types=["control.requested"])
    assert event.data == {"verb": "approve", "node": "flag", "by": SECRET, "comment": SECRET}


async def test_a_control_request_of_a_plain_execution_is_written_as_it_is() -> None:
    store = await store_with("public")
    raw = await request(store, "e1", node="flag", by="ann", comment="fine")
    assert raw == {"verb": "approve", "node": "flag", "by": "ann", "comment": "fine"}
