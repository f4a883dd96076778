"""Outbound events: the outbox and sink_deliveries tables.

While event sinks are configured, every commit copies its journal rows into ``outbox``; the
publisher deletes them once published, and records in ``sink_deliveries`` each event a sink
did not take (retried with backoff, then kept as a dead letter).

Revision ID: 0009
Revises: 0007 (0008 once that migration is on main)
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("seq", _SEQ, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("execution_id", sa.String(255), nullable=False),
        sa.Column("node_id", sa.String(128), nullable=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("correlation_id", sa.String(255), nullable=True),
        sa.Column("causation_id", sa.String(255), nullable=True),
        sa.Column("data", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name="pk_outbox"),
    )
    op.create_table(
        "sink_deliveries",
        sa.Column("id", _SEQ, autoincrement=True, nullable=False),
        sa.Column("sink", sa.String(100), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", sa.Float(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sink_deliveries"),
    )
    op.create_index("ix_sink_deliveries_status_next_at", "sink_deliveries", ["status", "next_at"])


def downgrade() -> None:
    op.drop_index("ix_sink_deliveries_status_next_at", table_name="sink_deliveries")
    op.drop_table("sink_deliveries")
    op.drop_table("outbox")
