"""The only place that reads the wall clock or sleeps for scheduling.

Every component takes a Clock. LiveClock reads the OS; ReplayClock is advanced by the replay
driver (or a test), so replays are deterministic and tests control time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now_ns(self) -> int: ...

    def monotonic_ns(self) -> int: ...

    async def sleep(self, seconds: float) -> None: ...


class LiveClock:
    """Wall clock for live, testnet and paper modes."""

    def now_ns(self) -> int:
        return time.time_ns()

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def now_ms(self) -> int:
        return self.now_ns() // 1_000_000


class ReplayClock:
    """Clock driven by the data: advance() moves it, sleep() yields without waiting."""

    def __init__(self, start_ns: int = 0) -> None:
        self._now_ns = start_ns

    def advance_to(self, ts_ns: int) -> None:
        if ts_ns > self._now_ns:
            self._now_ns = ts_ns

    def now_ns(self) -> int:
        return self._now_ns

    def monotonic_ns(self) -> int:
        return self._now_ns

    def now_ms(self) -> int:
        return self._now_ns // 1_000_000

    async def sleep(self, seconds: float) -> None:
        self._now_ns += int(seconds * 1e9)
        await asyncio.sleep(0)
