"""``Publisher``: drains the store's outbox into the event sinks, off the engine's turn.

While sinks are configured, every commit copies its journal rows into the outbox in the same
transaction (``store/outbox.py``); the engine's turn does nothing more. This task, woken after
commits and every ``delivery.interval`` seconds, holds the ``publisher`` lease (one process
of those sharing the database publishes; another takes over when it dies) and then, page by
page (``delivery.page`` entries):

1. builds each entry's ``OutboundEvent`` (``sinks/envelope.py``);
2. hands each sink the events it wants (its ``events`` patterns), all sinks at once;
3. deletes the page and records, in the same transaction, each event a sink did not take as a
   delivery owed (retried after ``delivery.backoff(attempts)``), or, out of attempts, as dead.

Then it retries the deliveries that are due (routing's notices join them there, queued by
``engine/notice_sinks.py`` for the sinks their addresses name). Nothing is lost to a
``kill -9``: an entry leaves the outbox only in step 3, after publishing, so a crash before
it publishes the page again (at least once: consumers deduplicate on the event id). Memory
is bounded by the page size; a sink that hangs is cut off by its own timeout and, failing
that, ``_SINK_DEADLINE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrion.core.rendered import public_data
from orchestrion.engine.deliveries import retry_delivery
from orchestrion.errors import ExecutionNotFound, StoreError
from orchestrion.sinks.base import NOT_SENT, Outcome, Sink, all_failed, describe
from orchestrion.sinks.config import SinksConfig
from orchestrion.sinks.envelope import OutboundEvent
from orchestrion.store.base import EventRecord
from orchestrion.store.outbox import DeliveryRecord, DeliveryStatus

if TYPE_CHECKING:
    from orchestrion.engine.facade import Engine

__all__ = ["LEASE_NAME", "Publisher", "SinkStats"]

logger = logging.getLogger(__name__)

LEASE_NAME = "publisher"
_SINK_DEADLINE = 120.0  # seconds: the last resort against a sink that ignores its timeout
_WORKFLOWS_KEPT = 4096
_MAX_REST = 60.0  # seconds at most a failing sink is left untried


def _attempts(outcome: str) -> int:
    """What a failed outcome counts for: an attempt, unless the event was not sent."""
    return 0 if outcome.startswith(NOT_SENT) else 1


@dataclass(slots=True)
class SinkStats:
    """What one sink did since the process started (Prometheus counters read these)."""

    published: int = 0
    failed: int = 0
    dead_lettered: int = 0


@dataclass(slots=True)
class _Page:
    """The events of one outbox page, and which sinks each goes to."""

    entries: list[EventRecord]
    events: list[OutboundEvent] = field(default_factory=list)
    targets: list[tuple[str, ...]] = field(default_factory=list)


class Publisher:
    """Publishes outbound events for ``engine`` (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        config: SinksConfig,
        sinks: Sequence[Sink],
    ) -> None:
        self._engine = engine
        self.config = config
        self.sinks = {sink.name: sink for sink in sinks}
        self.stats = {sink.name: SinkStats() for sink in sinks}
        self.backlog = 0  # outbox entries seen waiting at the last pass
        self.lease_seconds = config.delivery.lease
        self.holding = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._workflows: OrderedDict[str, tuple[str | None, str | None]] = OrderedDict()
        self._lease_until = 0.0
        self._strikes: dict[str, int] = {}  # pages in a row a sink took nothing of
        self._rest: dict[str, tuple[float, str]] = {}  # sink -> (monotonic until, why)

    # ------------------------------------------------------------------ life

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="orchestrion-publisher")

    def wake(self, *_: Any) -> None:
        """A commit happened (a record listener): look at the outbox now."""
        self._wake.set()

    async def stop(self, drain: float = 5.0) -> None:
        """Stop; publish what the outbox holds for up to ``drain`` seconds first. A pass
        under way is let finish (within ``drain``), since one cut between publishing a page
        and settling it would publish that page again."""
        task, self._task = self._task, None
        self._stopping = True
        self._wake.set()
        if task is not None:
            deadline = time.monotonic() + max(0.0, drain)
            try:
                async with asyncio.timeout(max(0.0, drain)):
                    await asyncio.shield(task)
            except TimeoutError:
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            left = deadline - time.monotonic()
            if left > 0 and self.holding:
                with contextlib.suppress(Exception, TimeoutError):
                    async with asyncio.timeout(left):
                        await self._publish_outbox()
            with contextlib.suppress(Exception):
                await self._engine.store.release_lease(LEASE_NAME, self._engine.owner)
            self.holding = False
        for sink in self.sinks.values():
            with contextlib.suppress(Exception):
                await sink.close()

    async def _run(self) -> None:
        interval = self.config.delivery.interval
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The store is away, say: the outbox keeps everything until the next pass.
                logger.exception("publishing events failed; trying again")
                await asyncio.sleep(min(5.0, interval * 4))

    # ------------------------------------------------------------------ one pass

    async def run_once(self) -> int:
        """One pass under the lease: the outbox, then the deliveries due. How many events it
        handed to sinks (0 without the lease)."""
        if not await self._claim():
            return 0
        moved = await self._publish_outbox()
        await self._retry_due()
        return moved

    async def _claim(self) -> bool:
        now = time.time()
        if self.holding and now < self._lease_until - self.lease_seconds / 2:
            return True
        self.holding = await self._engine.store.claim_lease(
            LEASE_NAME, self._engine.owner, now + self.lease_seconds, now
        )
        if self.holding:
            self._lease_until = now + self.lease_seconds
        return self.holding

    async def _publish_outbox(self) -> int:
        store = self._engine.store
        size = self.config.delivery.page
        moved = 0
        while True:
            entries = await store.outbox_page(size)
            if not entries:
                break
            page = await self._page(entries)
            owed = await self._deliver(page)
            await store.settle_outbox([entry.seq for entry in entries], owed)
            moved += len(entries)
            if len(entries) < size or not await self._claim():
                break
        self.backlog = await store.outbox_size()
        return moved

    async def _page(self, entries: list[EventRecord]) -> _Page:
        page = _Page(entries)
        # Events leave for systems that hold no role here: the policy's masking applies to
        # what they carry (errors, reasons), as for the least privileged API caller.
        masker = self._engine.governance.masker
        for entry in entries:
            workflow, version = await self._workflow_of(entry.execution_id)
            # Rendered inputs are node data, which events do not carry (as outputs).
            data = public_data(entry.data)
            data = data if masker is None or data is None else masker.mask_value(data)
            event = OutboundEvent.build(
                event_id=entry.id,
                event_type=entry.type,
                execution_id=entry.execution_id,
                at=entry.at,
                data=data,
                correlation_id=entry.correlation_id,
                causation_id=entry.causation_id,
                workflow=workflow,
                version=version,
                node_id=entry.node_id,
                attempt=entry.attempt,
            )
            page.events.append(event)
            page.targets.append(self._targets(entry))
        return page

    def _targets(self, entry: EventRecord) -> tuple[str, ...]:
        return tuple(name for name, sink in self.sinks.items() if sink.wants(entry.type))

    async def _deliver(self, page: _Page) -> list[DeliveryRecord]:
        """Publish ``page`` to every sink at once; the deliveries owed for what failed."""
        per_sink: dict[str, list[OutboundEvent]] = {name: [] for name in self.sinks}
        for event, targets in zip(page.events, page.targets, strict=True):
            for name in targets:
                per_sink[name].append(event)
        jobs = {name: events for name, events in per_sink.items() if events}
        resting = {name for name in jobs if self._resting(name)}
        tried = {name: events for name, events in jobs.items() if name not in resting}
        results = await asyncio.gather(
            *(self._publish(self.sinks[name], events) for name, events in tried.items())
        )
        now = time.time()
        owed: list[DeliveryRecord] = []
        for (name, events), outcomes in zip(tried.items(), results, strict=True):
            for event, outcome in zip(events, outcomes, strict=True):
                if outcome is None:
                    continue
                owed.append(self._owed(name, event, outcome, _attempts(outcome), now))
        for name in resting:  # not tried: owed from when the sink may answer again
            reason = f"{NOT_SENT} the sink failed every event lately ({self._rest[name][1]})"
            for event in jobs[name]:
                record = self._owed(name, event, reason, 0, now)
                record.next_at = self._wakes_at(name)
                owed.append(record)
        return owed

    def _resting(self, name: str) -> bool:
        """Whether ``name`` failed every event of its last page a moment ago: its events are
        then owed without trying, so a sink that is down (a host that never answers) does not
        hold every page for its timeouts, nor the other sinks' events with it."""
        rest = self._rest.get(name)
        return rest is not None and rest[0] > time.monotonic()

    def _wakes_at(self, name: str) -> float:
        """When (wall clock) a resting sink is tried again."""
        rest = self._rest.get(name)
        left = 0.0 if rest is None else max(0.0, rest[0] - time.monotonic())
        return time.time() + left

    def _after(self, name: str, outcomes: list[Outcome]) -> None:
        """Rest a sink that took none of a page, longer each time in a row (up to
        ``_MAX_REST`` s); a sink that took one event is trusted again at once."""
        if outcomes and all(outcome is not None for outcome in outcomes):
            strikes = self._strikes.get(name, 0) + 1
            self._strikes[name] = strikes
            seconds = min(_MAX_REST, self.config.delivery.initial_backoff * 2 ** (strikes - 1))
            self._rest[name] = (time.monotonic() + seconds, str(outcomes[0]))
        elif any(outcome is None for outcome in outcomes):
            self._strikes.pop(name, None)
            self._rest.pop(name, None)

    async def _publish(self, sink: Sink, events: list[OutboundEvent]) -> list[Outcome]:
        deadline = time.monotonic() + self.config.delivery.page_budget
        try:
            async with asyncio.timeout(_SINK_DEADLINE):
                outcomes = await sink.publish(events, deadline=deadline)
        except TimeoutError:
            outcomes = all_failed(events, f"the sink did not answer in {_SINK_DEADLINE:g} s")
        except Exception as exc:  # a sink's bug must not stop the others
            logger.exception("sink '%s' failed", sink.name)
            outcomes = all_failed(events, describe(exc))
        if len(outcomes) != len(events):
            outcomes = all_failed(events, "the sink answered for a different number of events")
        self._after(sink.name, outcomes)
        stats = self.stats[sink.name]
        taken = sum(1 for outcome in outcomes if outcome is None)
        failed = sum(1 for outcome in outcomes if outcome is not None and _attempts(outcome))
        stats.published += taken
        stats.failed += failed  # refused or lost; held back behind them is not counted
        if taken < len(events):
            first = next(outcome for outcome in outcomes if outcome is not None)
            logger.warning(
                "sink '%s' did not take %d of %d event(s): %s",
                sink.name, len(events) - taken, len(events), first,
            )  # fmt: skip
        return outcomes

    def _owed(
        self, sink: str, event: OutboundEvent, reason: str, attempts: int, now: float
    ) -> DeliveryRecord:
        policy = self.config.delivery
        dead = attempts >= policy.attempts
        if dead:
            if sink in self.stats:
                self.stats[sink].dead_lettered += 1
            logger.error(
                "event %s is a dead letter for sink '%s' after %d attempt(s): %s",
                event.id, sink, attempts, reason,
            )  # fmt: skip
        return DeliveryRecord(
            sink=sink,
            event_id=event.id,
            event=event.payload,
            attempts=attempts,
            next_at=now + policy.backoff(attempts),
            status=DeliveryStatus.DEAD if dead else DeliveryStatus.RETRY,
            error=reason,
            created_at=now,
            updated_at=now,
        )

    async def _retry_due(self) -> None:
        store = self._engine.store
        due = await store.due_deliveries(time.time(), self.config.delivery.page)
        if not due:
            return
        by_sink: dict[str, list[DeliveryRecord]] = {}
        for delivery in due:
            by_sink.setdefault(delivery.sink, []).append(delivery)
        done: list[int] = []
        changed: list[DeliveryRecord] = []
        names = list(by_sink)
        now = time.time()
        for name in [n for n in names if n in self.sinks and self._resting(n)]:
            names.remove(name)  # resting: due again when it may answer, attempts unchanged
            for delivery in by_sink[name]:
                delivery.next_at, delivery.updated_at = self._wakes_at(name), now
                changed.append(delivery)
        live = [n for n in names if n in self.sinks]
        results = await asyncio.gather(*(self._retry(name, by_sink[name]) for name in live))
        now = time.time()
        for name, outcomes in zip(live, results, strict=True):
            for delivery, outcome in zip(by_sink[name], outcomes, strict=True):
                if outcome is None:
                    done.append(delivery.id)
                    continue
                event = OutboundEvent.from_payload(delivery.event)
                tries = delivery.attempts + _attempts(outcome)
                again = self._owed(name, event, outcome, tries, now)
                again.id, again.created_at = delivery.id, delivery.created_at
                changed.append(again)
        for name in names:
            if name in self.sinks:
                continue
            for delivery in by_sink[name]:  # its sink left the configuration
                delivery.status = DeliveryStatus.DEAD
                delivery.error = f"sink '{name}' is no longer configured"
                delivery.updated_at = now
                changed.append(delivery)
        await store.settle_deliveries(done, changed)

    async def _retry(self, name: str, deliveries: list[DeliveryRecord]) -> list[Outcome]:
        events = [OutboundEvent.from_payload(d.event) for d in deliveries]
        return await self._publish(self.sinks[name], events)

    async def retry_dead(self, delivery_id: int) -> DeliveryRecord:
        """Make a delivery (a dead letter too) due again now, and look at it at once."""
        delivery = await retry_delivery(self._engine.store, delivery_id)
        self.wake()
        return delivery

    # ------------------------------------------------------------------ helpers

    async def _workflow_of(self, execution_id: str) -> tuple[str | None, str | None]:
        """The workflow name and version of an execution, remembered for the next events."""
        known = self._workflows.get(execution_id)
        if known is not None:
            self._workflows.move_to_end(execution_id)
            return known
        found: tuple[str | None, str | None] = (None, None)
        store = self._engine.store
        try:
            execution = await store.get_execution(execution_id)
            definition = await store.get_definition(execution.definition_id)
            found = (definition.name, definition.version)
        except (ExecutionNotFound, StoreError):
            pass  # purged meanwhile: the event goes out without its workflow's name
        self._workflows[execution_id] = found
        if len(self._workflows) > _WORKFLOWS_KEPT:
            self._workflows.popitem(last=False)
        return found
