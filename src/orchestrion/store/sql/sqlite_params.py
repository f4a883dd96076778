"""How the stdlib ``sqlite3`` binds the store's parameters that are not plain numbers or text.

``sqlite3`` binds an ``int``, ``float``, ``str`` or ``bytearray`` (those exact types) as it
is; any other value (``None``, a ``bool``, the ``str`` enum of a journal record's type) goes
through its adaptation first, which finds no adapter and then looks for ``__adapt__`` on its
protocol and ``__conform__`` on the value: an ``AttributeError`` raised and cleared, message
and all, each time. A commit of a 3-node execution binds about fifty such values (every NULL
column of its journal rows and node runs), a twentieth of the store's CPU. Registered
adapters answer at the first look, with what the module binds without them: NULL for
``None``, 0 or 1 for a ``bool``, the text of a record type. The registry is the module's, for
the whole process: these give every user of ``sqlite3`` what it got before.
"""

from __future__ import annotations

import sqlite3

from orchestrion.core.record_types import RecordType

__all__ = ["register_adapters"]


def _null(value: None) -> None:
    return None


def register_adapters() -> None:
    """Register the adapters (see the module docstring); again is harmless. A type the
    program that embeds Orchestrion gave an adapter of its own keeps it: the store binds
    such values through it, as it did before."""

    def free(kind: type) -> bool:
        return (kind, sqlite3.PrepareProtocol) not in sqlite3.adapters

    if free(type(None)):
        sqlite3.register_adapter(type(None), _null)
    if free(bool):
        sqlite3.register_adapter(bool, int)
    if free(RecordType):
        sqlite3.register_adapter(RecordType, str)
