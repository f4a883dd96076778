"""Node logs: the node_logs table, the log lines node attempts wrote.

One row per line, numbered by ``seq`` (what readers page and resume by), read by execution and
node in ``seq`` order through the one index.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "node_logs",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("execution_id", sa.String(255), nullable=False),
        sa.Column("node_id", sa.String(128), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("logger", sa.String(255), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
    )
    op.create_index(
        "ix_node_logs_execution_id_node_id_seq", "node_logs", ["execution_id", "node_id", "seq"]
    )


def downgrade() -> None:
    op.drop_index("ix_node_logs_execution_id_node_id_seq", table_name="node_logs")
    op.drop_table("node_logs")
