"""Signed-out dashboard sessions: the ended_sessions table.

A session cookie is signed, not stored, so signing out has to be remembered for the rest of
the cookie's lifetime. Kept in the database, a sign-out holds in every API process on it and
across restarts; each process reads the new rows every second.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ended_sessions",
        sa.Column("id", _SEQ, autoincrement=True, nullable=False),
        sa.Column("nonce", sa.String(64), nullable=False),
        sa.Column("expires", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ended_sessions"),
        sa.UniqueConstraint("nonce", name="uq_ended_sessions_nonce"),
    )


def downgrade() -> None:
    op.drop_table("ended_sessions")
