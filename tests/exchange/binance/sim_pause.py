"""Bring the loopback simulator to a standing book: replay, then pause after the n-th diff."""

from __future__ import annotations

import asyncio

from exchange.sim.server import SimServer


async def pause_after_diffs(sim: SimServer, n: int) -> None:
    """Start the replay and pause it after its n-th diff frame, so the book stands still."""
    count = 0
    reached = asyncio.Event()

    def on_diff(symbol: str, final_update_id: int) -> None:
        nonlocal count
        count += 1
        if count == n:
            sim.pause()
            reached.set()

    sim.on_depth_sent(on_diff)
    sim.start()
    await reached.wait()
