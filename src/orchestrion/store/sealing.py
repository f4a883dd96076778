"""How values are sealed at rest: envelopes bound to their row, and which parts stay readable.

Each envelope (AES-GCM, ``governance/encryption.py``) is bound to its row and field by
``context(execution, node, field)``, so a sealed value copied to another row does not open.
An error keeps its kind readable (``category``, ``type``, ``transient``: retries and metrics
need them) and seals the rest under ``message``; journal data keeps what says what happened
(``_PLAIN_DATA_KEYS``) and seals the rest under ``sealed``. ``EncryptedStore``
(``encrypted.py``) decides what to seal; this module is how.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from orchestrion.core.events import Record
from orchestrion.governance.encryption import (
    DecryptionError,
    KeyRing,
    decrypt_value,
    encrypt_value,
    is_encrypted,
)

__all__ = [
    "CHILD_FAILED",
    "child_ids",
    "context",
    "decrypt",
    "open_error",
    "open_journal_data",
    "open_value",
    "seal_error",
    "seal_journal_data",
    "seal_record",
    "sealed_error",
]

# Journal data keys that say what happened, not what a handler produced: left readable.
_PLAIN_DATA_KEYS = frozenset({"reason", "delay", "node", "nodes"})
# Control request keys that say what to do, to which attempt, and which process asks.
_PLAIN_REQUEST_KEYS = frozenset({"verb", "node", "reason", "attempt", "failed_at", "requested_by"})
# Error keys that say what kind of failure it was: left readable; the rest is sealed.
_PLAIN_ERROR_KEYS = frozenset({"category", "type", "transient", "retry_after"})
# The category of a node error that quotes a child execution's error.
CHILD_FAILED = "child_failed"


def context(execution_id: str, node_id: str | None, field: str) -> str:
    """The associated data binding an envelope to its row and field."""
    return f"orchestrion\x1f{execution_id}\x1f{node_id or ''}\x1f{field}"


def seal_error(ring: KeyRing, error: dict[str, Any], ctx: str) -> dict[str, Any]:
    """``error`` with everything but its kind (category, type, transient) in one envelope
    under ``message``."""
    if is_encrypted(error.get("message")):
        return error
    hidden = {k: v for k, v in error.items() if k not in _PLAIN_ERROR_KEYS}
    sealed = {k: v for k, v in error.items() if k in _PLAIN_ERROR_KEYS}
    sealed["message"] = encrypt_value(ring, hidden, ctx)
    return sealed


def open_error(ring: KeyRing | None, error: Any, ctx: str) -> Any:
    if not isinstance(error, dict) or not is_encrypted(error.get("message")):
        return error
    hidden = decrypt(ring, error["message"], ctx)
    opened = {k: v for k, v in error.items() if k != "message"}
    opened.update(hidden if isinstance(hidden, dict) else {"message": hidden})
    return opened


def open_journal_data(
    ring: KeyRing | None, data: dict[str, Any], execution_id: str, node_id: str | None
) -> dict[str, Any]:
    """Journal data with its sealed parts opened (see ``EncryptedStore._seal_record``)."""
    if "error" not in data and "sealed" not in data:
        return data
    opened = dict(data)
    if "error" in opened:
        opened["error"] = open_error(ring, opened["error"], context(execution_id, node_id, "error"))
    sealed = opened.get("sealed")
    if is_encrypted(sealed):
        del opened["sealed"]
        hidden = decrypt(ring, sealed, context(execution_id, node_id, "data"))
        if isinstance(hidden, dict):
            opened.update(hidden)
    return opened


def decrypt(ring: KeyRing | None, value: Any, ctx: str) -> Any:
    if ring is None:
        raise DecryptionError(
            f"a stored value is encrypted with key {value.get('kid')!r} but no encryption key"
            " is configured (ORCHESTRION_ENCRYPTION_KEYS)"
        )
    return decrypt_value(ring, value, ctx)


def sealed_error(error: Any) -> bool:
    return isinstance(error, dict) and is_encrypted(error.get("message"))


def open_value(ring: KeyRing | None, value: Any, ctx: str) -> Any:
    return decrypt(ring, value, ctx) if is_encrypted(value) else value


def child_ids(output: dict[str, Any]) -> list[str]:
    """The child executions whose results ``output`` carries: a ``workflow`` node's output,
    or a ``map`` of sub-workflows' (``{"results": [...]}``; a map also starts its children
    again after a crash, which flips its execution at once)."""
    child = output.get("child_execution_id")
    if isinstance(child, str):
        return [child]
    items = output.get("results")
    if not isinstance(items, list):
        return []
    return [
        item["child_execution_id"]
        for item in items
        if isinstance(item, dict) and isinstance(item.get("child_execution_id"), str)
    ]


def seal_record(ring: KeyRing, execution_id: str, record: Record) -> Record:
    """A copy of ``record`` with its data-bearing fields sealed (listeners keep the
    plaintext original)."""
    node = record.node
    error_ctx = context(execution_id, node, "error")
    changes: dict[str, Any] = {}
    if record.has_output:
        changes["output"] = encrypt_value(
            ring, record.output, context(execution_id, node, "output")
        )
    own_error: dict[str, Any] | None = None
    if record.error is not None:
        own_error = seal_error(ring, record.error, error_ctx)
        changes["error"] = own_error
    data = record.data
    if data:
        plain: dict[str, Any] = {}
        hidden: dict[str, Any] = {}
        for key, value in data.items():
            if key == "error" and isinstance(value, dict):
                # The run's own error is usually the same dict: seal it once.
                same = value is record.error and own_error is not None
                plain[key] = own_error if same else seal_error(ring, value, error_ctx)
            elif key in _PLAIN_DATA_KEYS and (key != "reason" or _system_reason(record, value)):
                plain[key] = value
            else:
                hidden[key] = value
        if hidden:
            plain["sealed"] = encrypt_value(ring, hidden, context(execution_id, node, "data"))
        changes["data"] = plain
    return _copy_record(record, changes) if changes else record


def seal_journal_data(ring: KeyRing, data: dict[str, Any], execution_id: str) -> dict[str, Any]:
    """Journal data written for an execution, not a node (a control request): what says what
    to do stays readable, the rest (who asked, their comment) goes under ``sealed``."""
    plain = {k: v for k, v in data.items() if k in _PLAIN_REQUEST_KEYS}
    hidden = {k: v for k, v in data.items() if k not in _PLAIN_REQUEST_KEYS}
    if not hidden:
        return data
    plain["sealed"] = encrypt_value(ring, hidden, context(execution_id, None, "data"))
    return plain


_RECORD_FIELDS = tuple(f.name for f in fields(Record))


def _copy_record(record: Record, changes: dict[str, Any]) -> Record:
    """``dataclasses.replace(record, **changes)`` for a third of its cost (it runs
    ``__init__`` again): every record that carries a value in a classified execution is
    copied on its way to the store."""
    copy = Record.__new__(Record)
    for name in _RECORD_FIELDS:
        setattr(copy, name, getattr(record, name))
    for name, value in changes.items():
        setattr(copy, name, value)
    return copy


def _system_reason(record: Record, value: Any) -> bool:
    """Whether a journal ``reason`` is the engine's (a skip, a cancellation, a wait's kind),
    not a key of the wait data a handler gave, which ``node.waiting`` data may hold too."""
    return record.wait_reason is None or value == record.wait_reason
