"""Keep the cyclic garbage collector off the objects a process starts with.

A full (oldest-generation) collection visits every tracked object: after the imports an engine
needs (pydantic models, FastAPI, SQLite, the handlers) that is some 40,000 to 80,000 objects,
30-40 ms per pass on a small machine, and CPython runs one whenever the objects that survived
younger collections grow by a quarter. A workflow that keeps a thousand nodes' state alive
triggers one in its first second, and the event loop stalls for the whole pass; a long-running
``serve`` repeats it. Those start-up objects live as long as the process, so the first engine
to start moves them to the permanent generation (``gc.freeze``): later passes visit only
what was made since. Cyclic garbage alive at that moment is never collected; that is a little
start-up debris, once. ``ORCHESTRION_GC_FREEZE=false`` leaves the collector alone (for
embedders who tune it themselves).
"""

from __future__ import annotations

import gc

__all__ = ["freeze_startup_objects"]

_done = False


def freeze_startup_objects() -> bool:
    """Freeze what the garbage collector tracks now, once per process; True the first time."""
    global _done
    if _done:
        return False
    _done = True
    gc.freeze()
    return True
