"""Execution ids as people type them: the whole id, or its first or last characters as long
as they name one execution.

An id begins with the time it was made, so executions made in the same minute share their
first characters and differ in their last ones: ``5c38`` finds the execution whose id starts
or ends with it. Dashes are optional: ``01a25256f8c3`` is the start of
``01a25256-f8c3-...`` and ``910bca7aa8f71419`` the end of ``...-910b-ca7aa8f71419``
(``core/id_parts.py``). ``resolve`` turns what was typed into the full id, locally (the
database of ``--db``) or on ``--server``. Characters that several ids start or end with are
refused with the candidates listed (exit 2); ones that no id starts or ends with are "not
found" (exit 5).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from orchestrion.cli.exits import EXIT_INVALID, EXIT_NOT_FOUND
from orchestrion.cli.local import database_url, run_async
from orchestrion.cli.terminal import fail
from orchestrion.core.id_parts import id_prefix, id_suffix

if TYPE_CHECKING:
    from orchestrion.client import Client

__all__ = ["resolve"]

# A whole id (what the engine makes) is used as typed: no lookup before the command's own.
_WHOLE_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ID_PART = re.compile(r"[0-9a-f-]+")  # what any part of an engine-made id is made of
_BARE = re.compile(r"[0-9a-f]{32}")  # a UUID without its dashes
_SHOWN = 10  # candidates listed for an ambiguous prefix


def resolve(given: str, *, db: str | None, server: str | None, api_key: str | None) -> str:
    """The full id of the one execution whose id is ``given``, starts or ends with it."""
    typed = given
    given = _spelled_as_stored(given)
    if not given:
        fail(EXIT_INVALID, "an execution id must not be empty")
    if _WHOLE_ID.fullmatch(given):
        return given
    if not _ID_PART.fullmatch(given):
        # No id has such characters: say so without asking the store or the server.
        fail(EXIT_NOT_FOUND, f"execution '{typed}' not found (an id is hexadecimal and dashes)")
    if server:
        matches = _remote_matches(given, server, api_key)
    else:
        matches = run_async(_local_matches(given, db))
    return _one(given, matches)


def _spelled_as_stored(given: str) -> str:
    """An id as the engine writes it, from the ways UUIDs are also written: upper case,
    without dashes, in braces or as a URN, with spaces around."""
    text = given.strip().lower()
    text = text.removeprefix("urn:uuid:")
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    if _BARE.fullmatch(text):
        text = f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
    return text


def _one(given: str, matches: list[str]) -> str:
    if given in matches:
        return given
    if not matches:
        fail(
            EXIT_NOT_FOUND,
            f"execution '{given}' not found (no id is, starts with or ends with it)",
        )
    if len(matches) == 1:
        return matches[0]
    shown = "\n".join(f"  {candidate}" for candidate in matches[:_SHOWN])
    more = "\n  ..." if len(matches) > _SHOWN else ""
    fail(
        EXIT_INVALID,
        f"execution id part '{given}' is ambiguous; it matches:\n{shown}{more}\n"
        "type more of the id (its last characters tell apart ids made close together)",
    )


async def _local_matches(given: str, db: str | None) -> list[str]:
    from orchestrion.errors import ExecutionNotFound
    from orchestrion.settings import load_settings
    from orchestrion.store.base import ExecutionFilter
    from orchestrion.store.factory import open_store

    # The ids alone: the store without the engine (no workers, no policy keys needed).
    settings = load_settings()
    store = open_store(
        database_url(db) or settings.database_url, sqlite_synchronous=settings.sqlite_synchronous
    )
    await store.open()
    try:
        try:
            return [(await store.get_execution(given)).id]
        except ExecutionNotFound:
            pass
        found: dict[str, None] = {}
        shown = _SHOWN + 1
        for flt in (
            ExecutionFilter(id_prefix=given, limit=shown),
            ExecutionFilter(id_suffix=given, limit=shown),
        ):
            records, _ = await store.list_executions(flt)
            found.update(dict.fromkeys(record.id for record in records))
        return list(found)
    finally:
        await store.close()


def _remote_matches(given: str, server: str, api_key: str | None) -> list[str]:
    from orchestrion.cli.remote import connected
    from orchestrion.client import NotFound

    with connected(server, api_key) as client:
        try:
            return [client.status(given, include_outputs=False).execution_id]
        except NotFound:
            pass
        return _listed(client, given)


def _listed(client: Client, given: str) -> list[str]:
    starting = client.list_executions(limit=_SHOWN + 1, id_prefix=given).items
    ending = client.list_executions(limit=_SHOWN + 1, id_suffix=given).items
    # Checked here too: a server that does not know a filter answers with every execution.
    start, end = id_prefix(given), id_suffix(given)
    found = [item.execution_id for item in starting if item.execution_id.startswith(start)]
    found += [item.execution_id for item in ending if item.execution_id.endswith(end)]
    return list(dict.fromkeys(found))
