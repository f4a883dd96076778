"""Trust stored with the work: definitions.trust and executions.trust.

Whether a definition or an execution may call any importable python function (``trusted``,
one's own file run locally) or only the policy's allowlist (``untrusted``, submitted through
the service) was decided by the process that ran it, so a retry or a resume in a trusted
process ran untrusted work trusted. The level is now stored with the work
(``governance/trust.py``).

Rows written before this migration cannot be told apart (the service and ``orchestrion run``
may share one database), so they all become untrusted: the safe reading. A retry of an old
execution of one's own file applies the allowlist; running the file again starts a trusted
execution.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TABLES = ("definitions", "executions")


def upgrade() -> None:
    # NOT NULL with a constant default: a plain ALTER TABLE ADD COLUMN on every backend (no
    # table copy on SQLite, no rewrite on PostgreSQL 11+), existing rows read as untrusted.
    for table in _TABLES:
        op.add_column(
            table,
            sa.Column("trust", sa.String(16), nullable=False, server_default="untrusted"),
        )


def downgrade() -> None:
    # Batch mode: SQLite before 3.35 cannot DROP COLUMN, so there the table is copied.
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("trust")
