"""The outbound queue: bounded, high priority first, drop-oldest-low when full, counted."""

from __future__ import annotations

import asyncio

import pytest

from engine.notify.queue import Outbound, OutboundQueue, Priority


def high(i: int) -> Outbound:
    return Outbound(1, f"h{i}", Priority.HIGH)


def low(i: int) -> Outbound:
    return Outbound(1, f"l{i}", Priority.LOW)


def texts(queue: OutboundQueue) -> list[str]:
    return [m.text for m in queue.pending()]


def test_high_priority_first_fifo_within_a_priority() -> None:
    queue = OutboundQueue(10)
    for message in (low(1), high(1), low(2), high(2)):
        assert queue.put(message) is None
    assert texts(queue) == ["h1", "h2", "l1", "l2"]
    assert [queue.get_nowait().text for _ in range(4)] == ["h1", "h2", "l1", "l2"]  # type: ignore[union-attr]
    assert queue.get_nowait() is None


def test_full_queue_drops_the_oldest_signal_first() -> None:
    queue = OutboundQueue(3)
    for message in (low(1), high(1), low(2)):
        queue.put(message)
    assert queue.put(high(2)).text == "l1"  # type: ignore[union-attr]
    assert texts(queue) == ["h1", "h2", "l2"]
    assert queue.put(low(3)).text == "l2"  # type: ignore[union-attr]
    assert texts(queue) == ["h1", "h2", "l3"]
    assert (queue.stats.dropped_low, queue.stats.dropped_high) == (2, 0)


def test_full_of_high_priority_drops_a_new_signal_or_the_oldest_alert() -> None:
    queue = OutboundQueue(2)
    queue.put(high(1))
    queue.put(high(2))
    signal = low(1)
    assert queue.put(signal) is signal  # the newcomer itself goes
    assert texts(queue) == ["h1", "h2"]
    assert queue.put(high(3)).text == "h1"  # type: ignore[union-attr]
    assert texts(queue) == ["h2", "h3"]
    assert (queue.stats.dropped_low, queue.stats.dropped_high, queue.stats.dropped) == (1, 1, 2)


def test_bound_holds_under_a_flood() -> None:
    queue = OutboundQueue(50)
    for i in range(10_000):
        queue.put(low(i) if i % 3 else high(i))
        assert len(queue) <= 50
    # 3,334 alerts (i % 3 == 0) and 6,666 signals were offered; the last 50 alerts are kept
    assert texts(queue) == [f"h{i}" for i in range(9999 - 49 * 3, 10_000, 3)]
    assert queue.stats.dropped_high == 3334 - 50
    assert queue.stats.dropped_low == 6666
    assert len(queue) == 10_000 - queue.stats.dropped  # every message offered is kept or counted


async def test_get_waits_for_a_message() -> None:
    queue = OutboundQueue(5)
    waiter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not waiter.done()
    queue.put(low(7))
    assert (await asyncio.wait_for(waiter, 5)).text == "l7"


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        OutboundQueue(0)
