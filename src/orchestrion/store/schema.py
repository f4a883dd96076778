"""The relational schema shared by every SQL store (SQLite now, PostgreSQL later).

This is the single description of the tables; the Alembic migrations under ``migrations/``
create and evolve them, and the SQLite adapter writes its SQL against these names. Types are
kept portable: JSON travels as ``Text`` and times as epoch-second ``Float``, so SQLite and
PostgreSQL store the same values and the same migrations serve both.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = [
    "audit",
    "audit_head",
    "definitions",
    "ended_sessions",
    "events",
    "executions",
    "follows_owed",
    "leases",
    "metadata",
    "node_logs",
    "node_runs",
    "outbox",
    "schedule_firings",
    "schedules",
    "sink_deliveries",
]

# Stable constraint names, so later migrations can refer to them on every backend.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = String(255)
NODE_ID = String(128)


def _counter(name: str = "seq", *, autoincrement: bool = True) -> Column[int]:
    """A 64-bit integer key: INTEGER on SQLite, so it is the rowid (SQLite autoincrements only
    an INTEGER PRIMARY KEY); a BIGINT on PostgreSQL, an identity when ``autoincrement``."""
    return Column(
        name,
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=autoincrement,
    )


def _event_columns() -> list[Column[Any]]:
    """A journal event's columns after its ``seq``: the events table's and the outbox's."""
    return [
        Column("id", ID, nullable=False),
        Column("execution_id", ID, nullable=False),
        Column("node_id", NODE_ID, nullable=True),
        Column("type", String(64), nullable=False),
        Column("attempt", Integer, nullable=False),
        Column("at", Float, nullable=False),
        Column("correlation_id", ID, nullable=True),
        Column("causation_id", ID, nullable=True),
        Column("data", Text, nullable=True),
    ]


definitions = Table(
    "definitions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("version", String(64), nullable=False),
    Column("spec", Text, nullable=False),
    Column("content_hash", String(128), nullable=False),
    Column("source_format", String(16), nullable=False),
    Column("dialect", String(32), nullable=False),
    Column("source", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    # "trusted" or "untrusted" (governance/trust.py; 0005). Rows from before the column are
    # untrusted: nothing tells the service's from one's own.
    Column("trust", String(16), nullable=False, server_default="untrusted"),
    # "available", "active" or "deprecated" (0008: the version's life, store/rules.py), who
    # submitted it, and who changed its status last, when.
    Column("status", String(16), nullable=False, server_default="available"),
    Column("created_by", String(200), nullable=True),
    Column("status_changed_at", Float, nullable=True),
    Column("status_changed_by", String(200), nullable=True),
    UniqueConstraint("name", "version"),
    Index("ix_definitions_name", "name"),
)

executions = Table(
    "executions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("definition_id", ID, ForeignKey("definitions.id"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("phase", String(16), nullable=False),
    Column("inputs", Text, nullable=False),
    Column("overrides", Text, nullable=False),
    Column("result", Text, nullable=True),
    Column("error", Text, nullable=True),
    # Unique but nullable: several executions without a key are allowed on both backends.
    Column("idempotency_key", ID, nullable=True, unique=True),
    Column("correlation_id", ID, nullable=True),
    Column("parent_execution_id", ID, nullable=True),
    Column("parent_node_id", NODE_ID, nullable=True),
    Column("labels", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("updated_at", Float, nullable=True),
    # The engine process running the execution, until when (ownership lease; 0002). No index:
    # takeover candidates are found through the status index (few rows are unfinished), and
    # an index here would be rewritten by every lease renewal and final commit.
    Column("owner", ID, nullable=True),
    Column("lease_until", Float, nullable=True),
    # "trusted" or "untrusted", as for definitions (0005): what retry, resume and recovery
    # enforce, whichever process runs them.
    Column("trust", String(16), nullable=False, server_default="untrusted"),
    # The id written backwards (0013): its index finds an execution by its last characters,
    # compared byte-wise as the id is. Null in rows an older process wrote: found all the same.
    Column(
        "id_reversed",
        String(255).with_variant(String(255, collation="C"), "postgresql"),
        nullable=True,
    ),
    Index("ix_executions_status", "status"),
    Index("ix_executions_created_status", "created_at", "status"),  # 0010: counts over time
    Index("ix_executions_definition_id", "definition_id"),
    Index("ix_executions_id_reversed", "id_reversed"),
)

node_runs = Table(
    "node_runs",
    metadata,
    Column("execution_id", ID, nullable=False),
    Column("node_id", NODE_ID, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("output", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("wait_reason", String(64), nullable=True),
    Column("wake_at", Float, nullable=True),
    Column("compensation", String(16), nullable=True),
    Column("updated_at", Float, nullable=True),
    PrimaryKeyConstraint("execution_id", "node_id"),
)

events = Table(
    "events",
    metadata,
    _counter(),
    # ``id`` is unique by construction (engine/ids.py) and never looked up: no index (0004).
    *_event_columns(),
    Index("ix_events_execution_id_seq", "execution_id", "seq"),
    # A seq is never reused, even after the newest events are purged: readers page by seq.
    # On SQLite the rowid counts up from the newest row, without AUTOINCREMENT's counter page
    # rewritten by every insert (0004); a purge that takes the newest rows leaves a mark row.
)

# The log lines node attempts wrote (0007), one row each; ``seq`` as the journal's.
node_logs = Table(
    "node_logs",
    metadata,
    _counter(),
    Column("execution_id", ID, nullable=False),
    Column("node_id", NODE_ID, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("at", Float, nullable=False),
    Column("level", String(16), nullable=False),
    Column("logger", String(255), nullable=False),
    Column("message", Text, nullable=False),
    Index("ix_node_logs_execution_id_node_id_seq", "execution_id", "node_id", "seq"),
)

audit = Table(
    "audit",
    metadata,
    # The key, and SQLite's rowid: chain order is storage order, with no extra index (0003).
    _counter(autoincrement=False),
    Column("at", Float, nullable=False),
    Column("action", String(128), nullable=False),
    Column("actor", ID, nullable=True),
    Column("execution_id", ID, nullable=True),
    Column("node_id", NODE_ID, nullable=True),
    Column("outcome", String(64), nullable=True),
    Column("details", Text, nullable=True),
    Column("prev_hash", String(64), nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_execution_id_seq", "execution_id", "seq"),
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("mac", String(64), nullable=False),  # HMAC of seq and hash: see AuditSigner
)

# Schedules (0006): one row per scheduled trigger of a definition, its state and its cursor
# (the newest tick dealt with).
schedules = Table(
    "schedules",
    metadata,
    Column("id", ID, primary_key=True),
    Column("definition_name", String(200), nullable=False),
    Column("definition_id", ID, nullable=False),
    Column("trigger_name", String(100), nullable=False),
    Column("spec", Text, nullable=False),
    Column("state", String(16), nullable=False),  # active | paused | deleted
    Column("cursor_at", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Every tick a scheduler fired: the key makes a tick fire once, whichever process records it
# first; a row still pending is started by the next pass (a crash lost nothing).
schedule_firings = Table(
    "schedule_firings",
    metadata,
    Column("schedule_id", ID, nullable=False),
    Column("tick_at", Float, nullable=False),
    Column("status", String(16), nullable=False),  # pending | started | skipped
    Column("execution_id", ID, nullable=True),
    Column("recorded_at", Float, nullable=False),
    PrimaryKeyConstraint("schedule_id", "tick_at"),
    Index("ix_schedule_firings_status", "status"),
)

# Named leases between processes (the scheduler's): held by ``owner`` until ``lease_until``.
leases = Table(
    "leases",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("owner", ID, nullable=False),
    Column("lease_until", Float, nullable=False),
)

# Outbound events (0009): a copy of each journal row committed while event sinks are
# configured, deleted once every sink took it or owes it (store/outbox.py).
outbox = Table(
    "outbox",
    metadata,
    _counter(),
    *_event_columns(),
)

# An event one sink did not take: retried at next_at, or dead (kept for an operator).
sink_deliveries = Table(
    "sink_deliveries",
    metadata,
    _counter("id"),
    Column("sink", String(100), nullable=False),
    Column("event_id", ID, nullable=False),
    Column("event", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_at", Float, nullable=False),
    Column("status", String(16), nullable=False),  # retry | dead
    Column("error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_sink_deliveries_status_next_at", "status", "next_at"),
)

# A dashboard session signed out, kept until the cookie would have expired (api/signouts.py).
ended_sessions = Table(
    "ended_sessions",
    metadata,
    _counter("id"),
    Column("nonce", String(64), nullable=False),
    Column("expires", Float, nullable=False),
    UniqueConstraint("nonce", name="uq_ended_sessions_nonce"),
)


# The followers an ended execution owes (its workflow.completed/failed event, not yet acted
# on): written in the commit that ends it, deleted once its followers are started, so an
# engine that stops (or dies) first leaves them to the next one (engine/emitting.py).
follows_owed = Table(
    "follows_owed",
    metadata,
    Column("execution_id", ID, primary_key=True),
    Column("ending", String(64), nullable=False),
    Column("at", Float, nullable=False),
)
