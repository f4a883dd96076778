"""The engine's start and stop: the order its parts open in, and close in.

``Engine.start`` and ``Engine.stop`` (``facade.py``) call these; they set up and tear down the
engine's own parts, so they read its private attributes.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

from orchestrion.engine.dispatchers import default_dispatcher, join_cluster
from orchestrion.engine.gc_tuning import (
    freeze_startup_objects,
    lower_young_threshold,
    raise_young_threshold,
    resume_collection,
)
from orchestrion.errors import OrchestrionError
from orchestrion.governance.log_masking import mask_process_logs
from orchestrion.store.encrypted import protect

if TYPE_CHECKING:
    from orchestrion.engine.facade import Engine

__all__ = ["start", "stop"]

logger = logging.getLogger(__name__)

# Seconds the last turns get on stop at the least, after the grace: enough for what was
# posted; a cascade of endings that goes on posting is left for the next start to recover.
_LAST_TURNS = 2.0


async def start(engine: Engine) -> None:
    """Open the store, the audit trail and the dispatcher, resume, then start the loop."""
    if engine._started:
        return
    if engine.settings.mask_all_logs:
        # Every log line of the process is masked from here on, whoever configured
        # logging: a process-wide hook, so only when asked (the CLI and the server ask).
        mask_process_logs(engine.governance.masker)
    if engine._store is None:
        from orchestrion.store.factory import open_store

        engine._store = open_store(
            engine.database_url, sqlite_synchronous=engine.settings.sqlite_synchronous
        )
    # Classified values are sealed before the adapter sees them (store/encrypted.py).
    engine._store = protect(engine._store, engine.governance)
    engine.governance.warn_missing_keys()
    await engine._store.open()
    try:
        await engine.audit.start()  # the trail's anchor: a checkpoint now, then periodically
    except BaseException:
        await engine._store.close()
        raise
    if engine._dispatcher is None:
        engine._dispatcher = default_dispatcher(
            engine, engine._resources, engine._children, engine._loop.report_progress
        )
    engine._loop.dispatcher = engine._dispatcher
    engine._ownership.cluster = join_cluster(
        engine, engine._dispatcher, engine._ownership, engine._scaleout, engine._listeners
    )
    try:
        await engine._dispatcher.start(engine._loop.post)
    except BaseException:
        await engine._dispatcher.close()  # a queue that cannot be reached: start again later
        await engine.audit.stop()
        await engine._store.close()
        raise
    engine._started = True
    engine._accepting = True
    if engine._recovery.resume:
        try:
            await engine._recovery.resume_unfinished()
        except BaseException:
            # Half started is worse than not started: a dispatcher left reading with no
            # loop to apply what it reads would swallow the events of the executions
            # it claimed. Give everything back; the caller may start afresh.
            await _abort_start(engine)
            raise
    if engine.settings.gc_freeze:
        freeze_startup_objects()  # imports and set-up are done: see gc_tuning
    resume_collection()  # paused by the command line while it started
    raise_young_threshold(engine, engine.settings.gc_young_threshold)
    engine._loop.start()
    engine._recovery.start()
    if engine._recovery.resume:
        await _follow_owed(engine)  # what an engine stopped or dead before left owed
    if engine.outbox and engine._recovery.resume:
        # Only an engine that takes up work publishes: not the API in scale-out mode, nor
        # a command that only reads or changes the store (resume=False).
        _start_publisher(engine)
    if engine._drives:
        # Other processes on this database ask through the journal: a second terminal in
        # embedded mode, and in scale-out a CLI given only the database (no Redis).
        await engine._requests.start()


async def _follow_owed(engine: Engine) -> None:
    try:
        await engine.followers.follow_owed()
    except OrchestrionError:  # the store is away: the next lease renewal tries again
        logger.warning("could not start the followers owed", exc_info=True)


def _start_publisher(engine: Engine) -> None:
    from orchestrion.engine.publishing import Publisher

    config = engine.sinks_config
    if config is None:
        return
    publisher = Publisher(engine, config, engine._sinks)
    engine.publisher = publisher
    engine._listeners.append(publisher.wake)
    publisher.start()


async def _stop_publisher(engine: Engine, grace: float) -> None:
    publisher, engine.publisher = engine.publisher, None
    if publisher is not None:
        engine.remove_listener(publisher.wake)
        await publisher.stop(drain=min(grace, 5.0))


async def _abort_start(engine: Engine) -> None:
    engine._accepting = False
    engine._loop.forget_all()
    with contextlib.suppress(Exception):
        await engine.store.release_executions(engine.owner)  # all it claimed
    with contextlib.suppress(Exception):
        await engine._dispatcher.close()  # type: ignore[union-attr]
    with contextlib.suppress(Exception):
        await engine.audit.stop()
    with contextlib.suppress(Exception):
        await engine.store.close()
    lower_young_threshold(engine)
    engine._started = False


async def stop(engine: Engine, grace: float | None = None) -> None:
    """Stop taking work, drain for ``grace`` s, commit the last turn, close the store."""
    if not engine._started:
        return
    await engine.followers.close()  # followers of executions that just ended, started first
    await engine.schedules.stop_scheduler()  # early: it starts executions
    engine._accepting = False
    grace = engine.settings.shutdown_grace if grace is None else grace
    await engine._requests.stop()
    await engine._children.close()
    await engine._recovery.stop()
    if engine._dispatcher is not None:
        await engine._dispatcher.close(grace)
    # Notices under way are delivered, and their confirmations committed, before the loop
    # stops: otherwise the next engine on this database would send them again.
    await engine.notices.drain()
    unfinished = await engine._loop.stop(max(grace, _LAST_TURNS))
    if unfinished:
        # Hand them back at once: the next engine on this database resumes them.
        await engine.store.release_executions(engine.owner, unfinished)
    engine._loop.forget_all()
    await _stop_publisher(engine, grace)  # after the last commit: its events go out too
    await engine._resources.aclose()
    await engine.audit.stop()  # the last checkpoint, while the store is open
    await engine.store.close()
    lower_young_threshold(engine)
    engine._started = False
