"""The audit trail: the append-only ``audit`` table and the head kept aside (``audit_head``).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit",
        # Storage order, apart from the signed seq: verify reads in this order, so records
        # moved around show as reordered.
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
            autoincrement=True,
        ),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("action", sa.String(128), nullable=False),
        sa.Column("actor", sa.String(255), nullable=True),
        sa.Column("execution_id", sa.String(255), nullable=True),
        sa.Column("node_id", sa.String(128), nullable=True),
        sa.Column("outcome", sa.String(64), nullable=True),
        sa.Column("details", sa.Text(), nullable=True),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_audit_seq", "audit", ["seq"])
    op.create_index("ix_audit_execution_id_seq", "audit", ["execution_id", "seq"])
    op.create_index("ix_audit_at", "audit", ["at"])
    # One row (id 1): the newest record's seq and hash, written by every append in its own
    # transaction (created by the first one), so a truncated trail shows.
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_head"),
    )


def downgrade() -> None:
    op.drop_table("audit_head")
    op.drop_index("ix_audit_at", table_name="audit")
    op.drop_index("ix_audit_execution_id_seq", table_name="audit")
    op.drop_index("ix_audit_seq", table_name="audit")
    op.drop_table("audit")
