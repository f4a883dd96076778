"""Executions by the last characters of their id: column id_reversed, and its index.

Ids are UUIDs of version 7: executions made in the same minute share their first characters,
so a user tells them apart by their last ones (the command line resolves a typed part of an
id by both ends, the API filters by ``id_suffix``). Without an index every such lookup read
every execution's id. An id's end is the start of the id written backwards: this column holds
it, its index answers a suffix as a range, as the primary key answers a prefix. It compares
byte-wise (``C`` on PostgreSQL, SQLite's default), as the id itself is compared. A row
written by a process older than this migration has no value there; lookups still find it.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_INDEX = "ix_executions_id_reversed"
_BATCH = 1000  # ids read and written at a time (a file may hold millions)


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    column = sa.String(255, collation="C") if postgres else sa.String(255)
    op.add_column("executions", sa.Column("id_reversed", column, nullable=True))
    if postgres:
        op.execute("UPDATE executions SET id_reversed = reverse(id)")
    else:  # SQLite has no reverse(): the ids are turned round here, a batch at a time
        page = sa.text("SELECT id FROM executions WHERE id > :after ORDER BY id LIMIT :n")
        update = sa.text("UPDATE executions SET id_reversed = :r WHERE id = :id")
        after = ""
        while ids := [row[0] for row in bind.execute(page, {"after": after, "n": _BATCH})]:
            bind.execute(update, [{"r": eid[::-1], "id": eid} for eid in ids])
            after = ids[-1]
    op.create_index(_INDEX, "executions", ["id_reversed"])


def downgrade() -> None:
    op.drop_index(_INDEX, table_name="executions")
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("id_reversed")
