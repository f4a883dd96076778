"""The local side of the commands (no ``--server``): the database of ``--db``, the embedded
engine, and running a coroutine with Orchestrion's errors turned into messages and exit codes.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from orchestrion.cli.exits import (
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_NOT_FOUND,
    EXIT_STORE,
)
from orchestrion.cli.terminal import err, fail, print_definition_error

if TYPE_CHECKING:
    from orchestrion.definition.limits import DefinitionLimits
    from orchestrion.engine.facade import Engine

__all__ = [
    "database_url",
    "definition_limits",
    "engine",
    "import_from_working_directory",
    "run_async",
]


def database_url(db: str | None, *, create: bool = False) -> str | None:
    """The URL of ``--db`` (a file path or a URL); exit 3 for a SQLite file in a directory
    that does not exist, rather than grow a tree and an empty store from a typo, and, unless
    the command may ``create`` the store (run, serve), for a file that does not exist: a
    mistyped path to read or act on is not a new, empty database."""
    if db is None:
        return None
    url = db if "://" in db else f"sqlite:///{db}"
    if url.startswith("sqlite:///"):
        from orchestrion.errors import ConfigurationError
        from orchestrion.store.sql.sqlite import url_to_sqlite_path

        try:
            folder = Path(url_to_sqlite_path(url)).expanduser().parent
        except ConfigurationError:
            return url  # the store says what is wrong with it
        if not folder.is_dir():
            fail(EXIT_STORE, f"cannot open SQLite store {db}: directory {folder} does not exist")
        path = Path(url_to_sqlite_path(url)).expanduser()
        if not create and not path.exists():
            fail(EXIT_STORE, f"no SQLite store at {db}: the file does not exist (check --db)")
    return url


def run_async(coro: Any) -> Any:
    """Run a coroutine, turning Orchestrion errors into clean messages and exit codes."""
    from orchestrion.cli.handover import graceful_on_sigterm
    from orchestrion.errors import (
        ConfigurationError,
        DefinitionError,
        ExecutionError,
        ExecutionNotFound,
        StoreError,
    )

    try:
        return asyncio.run(graceful_on_sigterm(coro))
    except DefinitionError as exc:
        print_definition_error(exc)
        raise typer.Exit(EXIT_INVALID) from None
    except ExecutionNotFound as exc:
        fail(EXIT_NOT_FOUND, str(exc))
    except (ExecutionError, ConfigurationError) as exc:
        fail(EXIT_INVALID, str(exc))
    except StoreError as exc:
        fail(EXIT_STORE, str(exc))
    except KeyboardInterrupt:
        err.print("interrupted: unfinished work resumes on the next start (orchestrion resume)")
        raise typer.Exit(EXIT_INTERRUPTED) from None


def definition_limits() -> DefinitionLimits:
    """The definition size limits of one's own files under the policy in force."""
    from orchestrion.errors import ConfigurationError
    from orchestrion.governance.policy import definition_limits as limits_of
    from orchestrion.governance.policy import load_policy
    from orchestrion.settings import load_settings

    try:
        loaded = load_policy(load_settings().governance_file)
    except ConfigurationError as exc:
        fail(EXIT_INVALID, str(exc))
    return limits_of(loaded, trusted=True)


def import_from_working_directory() -> None:
    """Local commands import `function: mysteps:step` from where they are started, as
    `python -m` would; the console script's own path holds only its bin directory."""
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


def engine(db: str | None, *, resume: bool = True, create: bool = False) -> Engine:
    """The embedded engine over the database of ``--db`` (or the configured one)."""
    from orchestrion.engine.facade import Engine

    import_from_working_directory()

    return Engine(database_url(db, create=create), resume=resume)
