"""The life of a definition version: definitions.status, created_by, status_changed_at/_by.

A name's versions were all alike: the newest was what triggers and schedules started. A
version is now ``available`` (submitted), ``active`` (chosen: new triggered and scheduled runs
use it, and a start that names no version) or ``deprecated`` (never chosen again; an explicit
start may still name it). At most one version of a name is active; with none marked, the
newest available one is. Rows from before this migration are available and keep behaving as
they did. ``created_by`` is who submitted the version (an API key's name, or the local user).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_COLUMNS = ("status", "created_by", "status_changed_at", "status_changed_by")


def upgrade() -> None:
    # NOT NULL with a constant default, or NULL: a plain ALTER TABLE ADD COLUMN everywhere.
    op.add_column(
        "definitions",
        sa.Column("status", sa.String(16), nullable=False, server_default="available"),
    )
    op.add_column("definitions", sa.Column("created_by", sa.String(200), nullable=True))
    op.add_column("definitions", sa.Column("status_changed_at", sa.Float, nullable=True))
    op.add_column("definitions", sa.Column("status_changed_by", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("definitions") as batch:
        for column in reversed(_COLUMNS):
            batch.drop_column(column)
