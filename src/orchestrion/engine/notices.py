"""Handing journalled notices to the notice sinks, after the commit that recorded them.

The machine decides a notice (``Notify``, with its ``execution.notice`` record in the same
step); once that step is committed the loop calls ``NoticeDelivery.send``, which resolves the
teams to their members and addresses from the configuration (``Settings.teams``) and gives the
notice to every sink in a task of its own, so a slow sink never holds the engine's turn. A sink
that raises is tried again with backoff (``ATTEMPTS`` times in all), then the failure is
logged; the notice stays in the journal either way. Once every sink took a notice, the engine
journals ``execution.notice_delivered`` in a commit of its own: a record that changes nothing
of the execution (``store/rules.py``, ``JOURNAL_ONLY``), so it is written whatever became of
the execution meanwhile (a halt's notice goes out after the commit that ended the run). An
engine that recovers an execution after a crash sends again the notices of it that have no
such record (same key: a sink drops what it has seen). Without configured sinks, notices go to
the log (``LogNoticeSink``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from orchestrion.core.events import Notify, Record
from orchestrion.core.notices import Notice, NoticeSink, notice_key
from orchestrion.core.record_types import RecordType
from orchestrion.engine.ids import new_event_id
from orchestrion.errors import StoreError
from orchestrion.settings import Settings
from orchestrion.store.base import CommitBatch, ExecutionRecord, Store

if TYPE_CHECKING:
    from orchestrion.engine.facade import Engine

NOTICE_EVENT_TYPES = [
    RecordType.EXECUTION_NOTICE.value,
    RecordType.EXECUTION_NOTICE_DELIVERED.value,
]

__all__ = ["ATTEMPTS", "NOTICE_EVENT_TYPES", "LogNoticeSink", "NoticeDelivery", "notice_of"]

logger = logging.getLogger("orchestrion.notices")

ATTEMPTS = 5
_FIRST_DELAY = 0.5


class LogNoticeSink:
    """Writes each notice to the ``orchestrion.notices`` log (the default sink)."""

    async def deliver(self, notices: Sequence[Notice]) -> None:
        for notice in notices:
            logger.warning(
                "%s for %s: %s",
                notice.kind,
                ", ".join(notice.teams) or "nobody",
                notice.message,
                extra={"notice": notice.to_dict()},
            )


def notice_of(
    settings: Settings, record: ExecutionRecord, data: dict[str, Any], at: float
) -> Notice:
    """The notice the machine's ``data`` describes, its teams resolved from ``settings``."""
    teams = tuple(str(t) for t in data.get("teams") or ())
    members: list[str] = []
    addresses: list[str] = []
    for name in teams:
        team = settings.teams.get(name)
        if team is not None:
            members.extend(m for m in team.members if m not in members)
            addresses.extend(a for a in team.notify if a not in addresses)
    node = data.get("node")
    rule = data.get("rule")
    kind = str(data.get("kind") or "")
    extra = data.get("data")
    return Notice(
        key=notice_key(record.id, data),
        kind=kind,
        execution_id=record.id,
        workflow=str(data.get("workflow") or ""),
        rule=rule if isinstance(rule, int) else None,
        teams=teams,
        message=str(data.get("message") or ""),
        at=at,
        node=node if isinstance(node, str) else None,
        members=tuple(members),
        addresses=tuple(addresses),
        data=dict(extra) if isinstance(extra, dict) else {},
    )


class NoticeDelivery:
    """Delivers an engine's notices to its sinks, off the engine's turn."""

    def __init__(
        self,
        settings: Settings,
        sinks: Sequence[NoticeSink] | None = None,
        engine: Engine | None = None,
    ) -> None:
        self._settings = settings
        self.sinks: list[NoticeSink] = list(sinks) if sinks else [LogNoticeSink()]
        self._tasks: set[asyncio.Task[None]] = set()
        self._engine = engine  # whose store journals the deliveries (none: not journalled)
        self.listen: Callable[[dict[str, list[Record]]], None] | None = None  # told what it wrote

    def send(self, record: ExecutionRecord, command: Notify) -> None:
        """Deliver the notice ``command`` describes, in the background."""
        notice = notice_of(self._settings, record, command.data, command.at)
        self._start(notice, record.correlation_id)

    async def resend(self, store: Store, record: ExecutionRecord) -> int:
        """Send again the journalled notices of ``record`` that no sink confirmed (after a
        crash); the number sent."""
        events = await store.list_events(record.id, types=NOTICE_EVENT_TYPES, limit=10_000)
        done = {
            e.data.get("key")
            for e in events
            if e.type == RecordType.EXECUTION_NOTICE_DELIVERED and isinstance(e.data, dict)
        }
        sent = 0
        for event in events:
            if event.type != RecordType.EXECUTION_NOTICE or not isinstance(event.data, dict):
                continue
            notice = notice_of(self._settings, record, event.data, event.at)
            if notice.key not in done:
                self._start(notice, record.correlation_id)
                sent += 1
        return sent

    def _start(self, notice: Notice, correlation_id: str | None) -> None:
        task = asyncio.create_task(self._deliver_all(notice, correlation_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver_all(self, notice: Notice, correlation_id: str | None) -> None:
        taken = await asyncio.gather(*(self._deliver(sink, notice) for sink in self.sinks))
        if all(taken):
            await self._journal(notice, correlation_id)

    async def _journal(self, notice: Notice, correlation_id: str | None) -> None:
        """Journal that every sink took ``notice``: of no owner, since the record changes
        nothing of the execution, which may have ended or moved to another process since."""
        engine = self._engine
        if engine is None:
            return
        execution_id = notice.execution_id
        record = Record(
            RecordType.EXECUTION_NOTICE_DELIVERED, time.time(), data={"key": notice.key}
        )
        batch = CommitBatch(audit=engine.audit.signer, outbox=engine.outbox)
        batch.correlation[execution_id] = correlation_id
        batch.add(execution_id, record, new_event_id(), None)
        try:
            await engine.store.commit(batch)
        except StoreError as exc:  # the store is away, or the execution was purged
            logger.warning("notice %s was delivered but not journalled: %s", notice.key, exc)
            return
        if self.listen is not None:
            self.listen({execution_id: [record]})

    async def _deliver(self, sink: NoticeSink, notice: Notice) -> bool:
        delay = _FIRST_DELAY
        for attempt in range(1, ATTEMPTS + 1):
            try:
                await sink.deliver([notice])
                return True
            except Exception:
                if attempt == ATTEMPTS:
                    logger.exception(
                        "notice %s could not be delivered to %s; it stays in the journal",
                        notice.key,
                        type(sink).__name__,
                    )
                    return False
                await asyncio.sleep(delay)
                delay *= 2
        return False

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait (up to ``timeout`` seconds) for deliveries under way."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
