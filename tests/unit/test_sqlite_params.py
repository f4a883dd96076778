"""The store's parameters that are not plain numbers or text bind as they always did, found
among the registered adapters instead of searched for on every value."""

from __future__ import annotations

import sqlite3

from orchestrion.core.record_types import RecordType
from orchestrion.store.sql import sqlite as sqlite_store  # registers the adapters
from orchestrion.store.sql.sqlite_params import register_adapters


def test_none_bool_and_record_types_bind_as_null_integer_and_text() -> None:
    assert sqlite_store.SQLiteStore is not None
    for kind in (type(None), bool, RecordType):
        assert (kind, sqlite3.PrepareProtocol) in sqlite3.adapters
    register_adapters()  # again: harmless
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (a, b, c, d, e)")
    conn.execute(
        "INSERT INTO t VALUES (?, ?, ?, ?, ?)",
        (None, True, False, RecordType.EXECUTION_STARTED, 7),
    )
    row = conn.execute(
        "SELECT typeof(a), a, typeof(b), b, typeof(c), c, typeof(d), d, e FROM t"
    ).fetchone()
    assert row == ("null", None, "integer", 1, "integer", 0, "text", "execution.started", 7)
    # Plain values are never adapted: no adapter may stand for a base type.
    assert not any(kind in (int, float, str, bytearray) for kind, _ in sqlite3.adapters)


def test_an_adapter_the_embedding_program_registered_is_kept() -> None:
    key = (bool, sqlite3.PrepareProtocol)
    ours = sqlite3.adapters[key]
    try:
        sqlite3.register_adapter(bool, lambda value: "yes" if value else "no")
        register_adapters()
        assert sqlite3.adapters[key] is not ours
        conn = sqlite3.connect(":memory:")
        assert conn.execute("SELECT ?", (True,)).fetchone() == ("yes",)
    finally:
        sqlite3.adapters[key] = ours
