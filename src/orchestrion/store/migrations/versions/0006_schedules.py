"""Schedules: the schedules, schedule_firings and leases tables.

A definition's scheduled triggers become rows of ``schedules``; each tick a scheduler fires is
a row of ``schedule_firings``, keyed by (schedule, tick) so that two processes fire it once;
``leases`` holds the lease of the one process that runs the scheduler.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("definition_name", sa.String(200), nullable=False),
        sa.Column("definition_id", sa.String(255), nullable=False),
        sa.Column("trigger_name", sa.String(100), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("cursor_at", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_schedules"),
    )
    op.create_table(
        "schedule_firings",
        sa.Column("schedule_id", sa.String(255), nullable=False),
        sa.Column("tick_at", sa.Float(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("execution_id", sa.String(255), nullable=True),
        sa.Column("recorded_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("schedule_id", "tick_at", name="pk_schedule_firings"),
    )
    op.create_index("ix_schedule_firings_status", "schedule_firings", ["status"])
    op.create_table(
        "leases",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("lease_until", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_leases"),
    )


def downgrade() -> None:
    op.drop_table("leases")
    op.drop_index("ix_schedule_firings_status", table_name="schedule_firings")
    op.drop_table("schedule_firings")
    op.drop_table("schedules")
