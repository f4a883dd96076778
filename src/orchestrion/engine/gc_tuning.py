"""Keep the cyclic garbage collector off the objects a process starts with.

A full (oldest-generation) collection visits every tracked object: after the imports an engine
needs (pydantic models, FastAPI, SQLite, the handlers) that is some 40,000 to 80,000 objects,
30-40 ms per pass on a small machine, and CPython runs one whenever the objects that survived
younger collections grow by a quarter. A workflow that keeps a thousand nodes' state alive
triggers one in its first second, and the event loop stalls for the whole pass; a long-running
``serve`` repeats it. Those start-up objects live as long as the process, so the first engine
to start moves them to the permanent generation (``gc.freeze``): later passes visit only
what was made since. Cyclic garbage alive at that moment is never collected; that is a little
start-up debris, once. The collector is the whole process's, so this is the ``gc_freeze``
setting: on in the CLI and the server, off for a program that embeds an engine unless it
asks (``ORCHESTRION_GC_FREEZE=true``, ``Settings(gc_freeze=True)``).

Before that, while the command line starts (``pause_collection``, the first thing its
``main`` does), the collector waits for 100,000 new objects rather than 700: its passes over
what the imports make, which lives on, cost a one-node ``orchestrion run`` about a tenth of
its CPU time, a full pass included. The pause ends when an engine starts or when the
collector first runs, whichever comes first, so a long-running command that starts no engine
(a worker, the reaper) collects as usual once it has started. The cyclic garbage of those
imports that the freeze then keeps is some 700 objects.

A large workflow definition is the same case again: an engine keeps each definition it has
compiled for as long as it runs, and the hundreds of thousands of objects of a 10,000-node
one made every later full pass cost a few hundred milliseconds on the event loop. Once such a
definition is loaded (it is kept, or freed by reference counting: it holds no cycles) and
again once it is compiled and cached, ``freeze_large`` moves it, and whatever else is alive
then, to the permanent generation as well; cyclic garbage alive at that moment is never
collected, a little in-flight debris per large definition.

While an engine runs, its youngest generation is collected after ``gc_young_threshold`` new
objects rather than CPython's 700 (``raise_young_threshold``). An engine with executions in
flight holds tens of thousands of short-lived objects at once (records, events, rendered
configs, the outputs waiting for their commit), so at 700 the collector ran every few dozen
nodes, found nearly all of it alive, and moved it to older generations, whose passes then
grew with it: a fifth to a quarter of the CPU time of 200 concurrent diamonds. Nothing is
kept longer than a young pass's worth of new objects, and the threshold only ever goes up (a
program that collects less often, or turned the collector off, is left as it is). It is
process-wide too: the setting is on in a process Orchestrion owns, off for an embedder unless
it asks, and the last engine that raised it puts the thresholds back when it stops.
"""

from __future__ import annotations

import gc
import weakref

__all__ = [
    "LARGE_DEFINITION_NODES",
    "freeze_large",
    "freeze_startup_objects",
    "lower_young_threshold",
    "pause_collection",
    "raise_young_threshold",
    "resume_collection",
]

LARGE_DEFINITION_NODES = 200
"""A definition with more nodes is large: loaded and compiled off the event loop, frozen."""

_done = False
_STARTING_THRESHOLD = 100_000
_paused: tuple[int, int, int] | None = None  # the thresholds to go back to


def pause_collection() -> None:
    """Wait for ``_STARTING_THRESHOLD`` new objects before the next collection, once: the
    thresholds come back with that collection, or with ``resume_collection`` if sooner."""
    global _paused
    if _paused is None:
        _paused = gc.get_threshold()
        gc.set_threshold(_STARTING_THRESHOLD, *_paused[1:])
        gc.callbacks.append(_first_collection)


def resume_collection() -> None:
    """The collector's thresholds as they were before ``pause_collection``."""
    _restore()
    # Not from inside a collection: the collector is walking its callbacks then.
    if _first_collection in gc.callbacks:
        gc.callbacks.remove(_first_collection)


def _restore() -> None:
    global _paused
    if _paused is not None:
        gc.set_threshold(*_paused)
        _paused = None


def _first_collection(phase: str, _info: dict[str, int]) -> None:
    if phase == "start":
        _restore()  # the callback stays, doing nothing, unless an engine starts


def freeze_startup_objects() -> bool:
    """Freeze what the garbage collector tracks now, once per process; True the first time."""
    global _done
    if _done:
        return False
    _done = True
    gc.freeze()
    return True


def freeze_large(nodes: int, enabled: bool = True) -> None:
    """Freeze what the garbage collector tracks now if a definition of ``nodes`` nodes is
    large (and freezing is ``enabled``: the ``gc_freeze`` setting)."""
    if enabled and nodes > LARGE_DEFINITION_NODES:
        gc.freeze()


# The engines that raised the young threshold (weakly: one dropped without a stop lets go),
# the thresholds from before, and the first one set, to tell whether someone changed it since.
_raisers: weakref.WeakSet[object] = weakref.WeakSet()
_before_raise: tuple[int, int, int] | None = None
_raised_to = 0


def raise_young_threshold(holder: object, threshold: int) -> None:
    """Collect the youngest generation after ``threshold`` new objects while ``holder`` (an
    engine) runs, unless it is 0 or the collector already waits as long, or is off."""
    global _before_raise, _raised_to
    if _raisers:
        _raisers.add(holder)  # raised already, by an engine still running
        return
    current = gc.get_threshold()
    if threshold <= 0 or current[0] == 0 or current[0] >= threshold:
        return
    _before_raise, _raised_to = current, threshold
    gc.set_threshold(threshold, *current[1:])
    _raisers.add(holder)


def lower_young_threshold(holder: object) -> None:
    """``holder`` stops: the last raiser to stop puts the thresholds from before it back,
    unless the program changed them meanwhile."""
    global _before_raise
    if holder not in _raisers:
        return
    _raisers.discard(holder)
    if not _raisers and _before_raise is not None:
        if gc.get_threshold()[0] == _raised_to:
            gc.set_threshold(*_before_raise)
        _before_raise = None
