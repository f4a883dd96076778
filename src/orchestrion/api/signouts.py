"""Sign-outs shared through the store.

A session cookie is valid in every API process serving the same keys, so a sign-out must be
too: ``sign_out`` records it in the store as well as in this process's book, and ``follow``
reads the store's new sign-outs every ``POLL_SECONDS`` into the book, so another replica
refuses the cookie within about a second, and a restarted process at once (``catch_up``
runs before the app serves).
"""

from __future__ import annotations

import asyncio
import logging
import time

from orchestrion.api.auth import identifier
from orchestrion.api.sessions import SessionBook, Ticket
from orchestrion.engine.sign_outs import SignOuts
from orchestrion.errors import StoreError
from orchestrion.settings import Settings

__all__ = ["POLL_SECONDS", "catch_up", "follow", "sign_out"]

logger = logging.getLogger(__name__)

POLL_SECONDS = 1.0
"""How often each API process reads the sign-outs made elsewhere."""

# PostgreSQL numbers a row before its transaction commits, so a sign-out may become visible
# after one with a higher number: each read goes back this many rows.
_WINDOW = 100
_PAGE = 10_000


async def sign_out(store: SignOuts, book: SessionBook, ticket: Ticket) -> None:
    """End the session of ``ticket`` here at once, and everywhere through the store."""
    book.end(ticket)
    await store.end(ticket.nonce, float(ticket.expires), time.time())


async def catch_up(store: SignOuts, book: SessionBook) -> None:
    """Read into ``book`` the sign-outs the store has that it may not."""
    while True:
        rows = await store.since(max(0, book.cursor - _WINDOW), time.time(), _PAGE)
        for row in rows:
            book.end_nonce(row.nonce, row.expires)
            book.cursor = max(book.cursor, row.seq)
        if len(rows) < _PAGE:
            return


async def follow(store: SignOuts, settings: Settings) -> None:
    """Keep the book of ``settings``' keys up to date with the store, until cancelled."""
    while True:
        await asyncio.sleep(POLL_SECONDS)
        try:
            await catch_up(store, identifier(settings).sessions)
        except StoreError as exc:  # the next round tries again; sessions known stay ended
            logger.warning("could not read sign-outs from the store: %s", exc)
