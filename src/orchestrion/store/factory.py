"""``open_store``: pick the store adapter from a database URL."""

from __future__ import annotations

from pathlib import Path

from orchestrion.errors import ConfigurationError, StoreError
from orchestrion.store.base import Store
from orchestrion.store.sql.sqlite import SQLiteStore, SQLiteSynchronous, url_to_sqlite_path

__all__ = ["open_store"]


def open_store(url: str, *, sqlite_synchronous: SQLiteSynchronous = "normal") -> Store:
    """The (unopened) store for ``url``.

    ``memory://`` keeps everything in this process; ``sqlite:///path.db`` (or a bare file
    path) is the embedded store; ``postgresql://`` (or ``postgres://``) is the scale-out store.
    ``sqlite_synchronous`` is the SQLite store's durability (``Settings.sqlite_synchronous``).
    """
    scheme, sep, _ = url.partition("://")
    if not sep:
        return SQLiteStore(Path(url).expanduser(), synchronous=sqlite_synchronous)
    scheme = scheme.lower()
    if scheme == "memory":
        # Imported here, as PostgreSQL's below: a file's store does not load the memory one.
        from orchestrion.store.memory import MemoryStore

        return MemoryStore()
    if scheme == "sqlite":
        path = Path(url_to_sqlite_path(url)).expanduser()
        return SQLiteStore(path, synchronous=sqlite_synchronous)
    if scheme.split("+", 1)[0] in ("postgresql", "postgres"):
        _require_postgres_driver()
        # Imported here: SQLAlchemy costs the embedded store's start-up a third of a second.
        from orchestrion.store.sql.postgres import PostgresStore

        return PostgresStore(url)
    raise ConfigurationError(
        f"unsupported database URL scheme '{scheme}://'"
        " (use sqlite:///path.db, a file path, postgresql://user@host/db or memory://)"
    )


def _require_postgres_driver() -> None:
    """A ``StoreError`` with the one command that fixes it when the optional PostgreSQL
    packages are missing, instead of a driver traceback at the first query."""
    from importlib import import_module

    try:
        for module in ("asyncpg", "greenlet", "sqlalchemy"):  # greenlet: SQLAlchemy's asyncio
            import_module(module)
    except ImportError as exc:
        raise StoreError(
            f"a postgresql:// database needs the PostgreSQL extra ({exc.name or exc} is"
            " missing): pip install 'orchestrion[postgres]'"
        ) from None
