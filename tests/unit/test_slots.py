"""The local dispatcher's bound on attempts running at once: places taken and given back in
the order callers came, and none lost to a caller cancelled while it waited."""

from __future__ import annotations

import asyncio

import pytest

from orchestrion.execution.slots import Slots


def test_a_free_place_is_taken_at_once_until_none_is_left() -> None:
    slots = Slots(2)
    assert slots.take_now()
    assert slots.take_now()
    assert not slots.take_now()
    slots.release()
    assert slots.take_now()


def test_no_slots_at_all_is_refused() -> None:
    with pytest.raises(ValueError):
        Slots(0)


async def test_waiters_get_freed_places_in_the_order_they_came() -> None:
    slots = Slots(1)
    assert slots.take_now()
    order: list[int] = []

    async def one(i: int) -> None:
        await slots.wait_for_one()
        order.append(i)
        await asyncio.sleep(0)
        slots.release()

    tasks = [asyncio.create_task(one(i)) for i in range(5)]
    await asyncio.sleep(0)
    assert not slots.take_now()  # nobody may jump ahead of those waiting
    slots.release()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    assert slots.free == 1


async def test_a_cancelled_waiter_loses_no_place() -> None:
    slots = Slots(1)
    assert slots.take_now()
    gone = asyncio.create_task(slots.wait_for_one())
    handed = asyncio.create_task(slots.wait_for_one())
    after = asyncio.create_task(slots.wait_for_one())
    await asyncio.sleep(0)
    gone.cancel()  # cancelled while waiting: out of the line
    await asyncio.sleep(0)
    slots.release()  # goes to ``handed``...
    handed.cancel()  # ...which is cancelled before it runs: the place goes on to ``after``
    await asyncio.gather(gone, handed, return_exceptions=True)
    await asyncio.wait_for(after, 1)
    slots.release()
    assert slots.free == 1


async def test_a_waiter_cancelled_after_a_release_passed_it_over_leaves_quietly() -> None:
    slots = Slots(1)
    assert slots.take_now()
    gone = asyncio.create_task(slots.wait_for_one())
    await asyncio.sleep(0)
    gone.cancel()  # its future is cancelled at once; the task runs later
    slots.release()  # passes over the cancelled waiter: the place is free again
    results = await asyncio.gather(gone, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert slots.free == 1
    assert slots.take_now()
