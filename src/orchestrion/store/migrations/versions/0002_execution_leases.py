"""Execution ownership leases: executions.owner and executions.lease_until.

Revision ID: 0002
Revises: 0001
Create Date: 2024-07-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable columns without a default: a plain ALTER TABLE ADD COLUMN on every backend,
    # no table copy, and existing executions start unowned.
    op.add_column("executions", sa.Column("owner", sa.String(255), nullable=True))
    op.add_column("executions", sa.Column("lease_until", sa.Float(), nullable=True))


def downgrade() -> None:
    # Batch mode: SQLite before 3.35 cannot DROP COLUMN, so there the table is copied.
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("owner")
