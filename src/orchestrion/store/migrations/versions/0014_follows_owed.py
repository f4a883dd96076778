"""Followers owed by ended executions: the follows_owed table.

The commit that ends an execution whose workflow has followers records them as owed; the
engine deletes the row once it started them. An engine that stops or dies first leaves the
row, and the next engine on the database starts them.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "follows_owed",
        sa.Column("execution_id", sa.String(255), nullable=False),
        sa.Column("ending", sa.String(64), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("execution_id", name="pk_follows_owed"),
    )


def downgrade() -> None:
    op.drop_table("follows_owed")
