"""A leaner journal: fewer pages written by every commit.

Every engine turn commits its journal events and node-run snapshots, and on SQLite each B-tree
page a commit touches is one more frame written to the WAL. Two of those pages held nothing
that anything reads:

- ``uq_events_id``, the unique index on event ids: no query looks an event up by id, and the
  ids are unique by construction (``engine/ids.py``). Dropped on every backend.
- ``sqlite_sequence``, which ``AUTOINCREMENT`` rewrites at every insert. SQLite's plain rowid
  key already counts up from the newest row; the one case where a seq could come back (the
  newest rows deleted by a purge) is covered by the purge itself, which leaves a mark row
  holding the highest seq (see ``SQLiteStore.purge_executions``). This migration leaves the
  same mark when the counter is above the newest row. SQLite only.

(``node_runs`` keeps its rowid beside its key: without it, reading an execution's node runs in
insertion order costs a join on the journal, more than the page it saves per commit.)

SQLite cannot change a table's key in place, so ``events`` is copied into a new table in the
migration's transaction.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_EVENT_COLS = (
    "seq, id, execution_id, node_id, type, attempt, at, correlation_id, causation_id, data"
)


def _events_table(name: str, *, autoincrement: bool, unique_id: bool) -> None:
    extra: list[sa.SchemaItem] = [sa.PrimaryKeyConstraint("seq", name="pk_events")]
    if unique_id:
        extra.append(sa.UniqueConstraint("id", name="uq_events_id"))
    op.create_table(
        name,
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("execution_id", sa.String(255), nullable=False),
        sa.Column("node_id", sa.String(128), nullable=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("correlation_id", sa.String(255), nullable=True),
        sa.Column("causation_id", sa.String(255), nullable=True),
        sa.Column("data", sa.Text(), nullable=True),
        *extra,
        sqlite_autoincrement=autoincrement,
    )


def _move(old: str, new: str, cols: str) -> None:
    """Copy ``old`` into ``new`` (created beside it), then put ``new`` in its place."""
    op.execute(f"INSERT INTO {new} ({cols}) SELECT {cols} FROM {old}")
    op.drop_table(old)
    op.rename_table(new, old)


def _rebuild_sqlite(*, lean: bool) -> None:
    bind = op.get_bind()
    counter = None
    if lean:
        has_sequence = bind.execute(
            sa.text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'")
        ).first()
        if has_sequence is not None:
            counter = bind.execute(
                sa.text("SELECT seq FROM sqlite_sequence WHERE name = 'events'")
            ).scalar()
    op.drop_index("ix_events_execution_id_seq", table_name="events")
    # The copy is created under its final constraint names (pk_events), which SQLite keeps
    # as text in the table's SQL only.
    _events_table("events_0004", autoincrement=not lean, unique_id=not lean)
    _move("events", "events_0004", _EVENT_COLS)
    op.create_index("ix_events_execution_id_seq", "events", ["execution_id", "seq"])
    if counter is not None:
        newest = bind.execute(sa.text("SELECT max(seq) FROM events")).scalar() or 0
        if counter > newest:  # the newest events were purged: keep their seqs used
            bind.execute(
                sa.text(
                    "INSERT INTO events (seq, id, execution_id, node_id, type, attempt, at)"
                    " VALUES (:seq, :id, '', NULL, 'journal.mark', 0, :at)"
                ),
                {"seq": counter, "id": f"mark-{counter}", "at": time.time()},
            )


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite(lean=True)
    else:
        op.drop_constraint("uq_events_id", "events", type_="unique")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DELETE FROM events WHERE execution_id = ''")
        _rebuild_sqlite(lean=False)
    else:
        op.create_unique_constraint("uq_events_id", "events", ["id"])
