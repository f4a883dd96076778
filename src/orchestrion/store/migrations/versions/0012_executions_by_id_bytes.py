"""Executions by the bytes of their id on PostgreSQL: index (id COLLATE "C").

An id is found by its first characters (the command line, the API's ``id_prefix``) as the
byte range [prefix, prefix with its last character raised), compared byte-wise as SQLite
compares, whatever the database's collation. The primary key's index is in the database's
collation, so on a database whose collation is not ``C`` (``en_US.UTF-8``, ``C.UTF-8``, most
installations) it cannot answer that range, and every lookup read every execution row. This
index can; a database whose collation is ``C`` or ``POSIX`` has its primary key for it and
gets none. SQLite compares bytes already: nothing changes there.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_INDEX = "ix_executions_id_bytewise"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    collation = bind.exec_driver_sql(
        "SELECT datcollate FROM pg_database WHERE datname = current_database()"
    ).scalar()
    if collation in ("C", "POSIX"):
        return
    op.execute(f'CREATE INDEX {_INDEX} ON executions (id COLLATE "C")')


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP INDEX IF EXISTS {_INDEX}")
