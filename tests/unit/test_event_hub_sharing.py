"""Streams woken by one commit share one read; nothing stale is ever shared."""

from __future__ import annotations

import asyncio

from orchestrion.api.hub import EventHub


class Reads:
    """A read that counts itself and returns what the journal holds now."""

    def __init__(self) -> None:
        self.count = 0
        self.journal: list[int] = []

    async def __call__(self) -> list[int]:
        self.count += 1
        return list(self.journal)


async def test_streams_of_one_key_read_once_per_commit() -> None:
    hub, reads = EventHub(), Reads()
    with hub.watch("e1"):
        pages = [await hub.shared("e1", ("events", 0), reads) for _ in range(50)]
        assert reads.count == 1 and pages == [[]] * 50
        reads.journal.append(1)
        hub.notify("e1", [])  # a commit: what was read before it is stale
        assert await hub.shared("e1", ("events", 0), reads) == [1]
        assert await hub.shared("e1", ("events", 0), reads) == [1]
        assert reads.count == 2


async def test_a_commit_of_any_execution_refreshes_the_global_streams() -> None:
    hub, reads = EventHub(), Reads()
    with hub.watch(None), hub.watch("e1"):
        await hub.shared(None, ("events", 0), reads)
        await hub.shared("e1", ("events", 0), reads)
        hub.notify("e2", [])  # another execution: e1's page stays good, the global one not
        await hub.shared(None, ("events", 0), reads)
        await hub.shared("e1", ("events", 0), reads)
        assert reads.count == 3


async def test_different_pages_are_read_apart() -> None:
    hub, reads = EventHub(), Reads()
    with hub.watch("e1"):
        await hub.shared("e1", ("events", 0), reads)
        await hub.shared("e1", ("events", 7), reads)
        await hub.shared("e1", ("events", 0, ("node.failed",)), reads)
        assert reads.count == 3


async def test_a_read_overtaken_by_a_commit_is_not_kept() -> None:
    hub, reads = EventHub(), Reads()
    started, release = asyncio.Event(), asyncio.Event()

    async def slow() -> list[int]:
        started.set()
        await release.wait()
        return await reads()

    with hub.watch("e1"):
        task = asyncio.create_task(hub.shared("e1", ("events", 0), slow))
        await started.wait()
        reads.journal.append(1)
        hub.notify("e1", [])  # committed while the read was on its way
        release.set()
        await task
        assert await hub.shared("e1", ("events", 0), reads) == [1]
        assert reads.count == 2  # the slow read was not shared


async def test_a_kept_read_ages_out_for_what_no_commit_announced() -> None:
    # Another process's commits wake no hub: the streams' polling must read afresh.
    hub, reads = EventHub(shared_for=0.05), Reads()
    with hub.watch("e1"):
        await hub.shared("e1", ("events", 0), reads)
        reads.journal.append(1)  # written elsewhere, never notified
        await asyncio.sleep(0.06)
        assert await hub.shared("e1", ("events", 0), reads) == [1]


async def test_nothing_is_kept_for_a_key_nobody_watches() -> None:
    hub, reads = EventHub(), Reads()
    await hub.shared("e1", ("events", 0), reads)
    with hub.watch("e1"):
        await hub.shared("e1", ("events", 0), reads)
    await hub.shared("e1", ("events", 0), reads)  # the stream ended: dropped with it
    assert reads.count == 3
