"""The ids the engine makes: events, executions and definitions, each in the order made.

Event ids are 32 hex characters, as unique as a UUID4: the first 16 characters are the clock
in nanoseconds and the last 16 are random, so ids made later sort after earlier ones (across
processes, as far as their clocks agree) and two ids made in the same nanosecond still
differ. Uniqueness comes from this construction: stores check only that one batch does not
repeat an id, and keep no index on event ids, which every commit would have to write
(migration 0004).

Execution and definition ids are UUIDs of version 7 (RFC 9562): the Unix time in
milliseconds, then 74 random bits from the operating system. A store keys an execution's
row, its node runs and its journal by its id; ids that grow with time put a new
execution's rows next to the last one's in those indexes, where random ones would touch a
page of each index anywhere in a file of long history at every commit (a tenth or more of
the engine's time in a file with ten thousand executions behind it). The random part is
what makes an id hard to guess, as a UUID4's 122 bits do.
"""

from __future__ import annotations

import os
from random import getrandbits
from time import time_ns

__all__ = ["new_event_id", "new_record_id"]

_VERSION_7 = 0x7 << 76
_VARIANT = 0b10 << 62
_RAND_A = 0xFFF << 64  # 12 bits after the version
_RAND_B = (1 << 62) - 1


def new_event_id() -> str:
    """A new time-ordered event id (see the module docstring)."""
    # The module-level Mersenne Twister: seeded from the OS at import and again in a forked
    # child, and without the system call os.urandom makes for every id.
    # %-formatting: half the cost of an f-string with format specs, three times per node.
    return "%016x%016x" % (time_ns(), getrandbits(64))  # noqa: UP031


def new_record_id() -> str:
    """A new UUID version 7 in its usual text form: an execution's or a definition's id."""
    random = int.from_bytes(os.urandom(10))  # 80 bits, 74 of them used
    value = (
        (time_ns() // 1_000_000) << 80
        | _VERSION_7
        | (random >> 4) & _RAND_A
        | _VARIANT
        | random & _RAND_B
    )
    text = "%032x" % value  # noqa: UP031
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
