"""A clock that runs `factor` times faster than the wall clock: market time for a soak.

The simulator and the engine share one: the replay runs at speed 1 on it, so the exchange's
server time and the engine's clock advance together (no -1021 from time compression), and every
timer of both sides (keep-alives, listenKey validity, reconcile periods, stall watchdogs) runs in
market time. Processes agree on it: it is derived from the system-wide CLOCK_MONOTONIC and an
origin that a parent hands to its child (`ScaledClock.from_spec(clock.spec())`).
"""

from __future__ import annotations

import asyncio
import time


class ScaledClock:
    """Wall clock sped up by `factor` from an origin (monotonic ns, now ns) shared by processes."""

    def __init__(self, factor: float, origin: tuple[int, int] | None = None) -> None:
        if factor <= 0:
            raise ValueError("factor must be > 0")
        self.factor = float(factor)
        # the one place of the soak that reads the OS clocks: everything else takes this clock
        self._mono0, self._now0 = origin or (time.monotonic_ns(), time.time_ns())

    def _elapsed_ns(self) -> int:
        return int((time.monotonic_ns() - self._mono0) * self.factor)

    def now_ns(self) -> int:
        return self._now0 + self._elapsed_ns()

    def monotonic_ns(self) -> int:
        return self._mono0 + self._elapsed_ns()

    def now_ms(self) -> int:
        return self.now_ns() // 1_000_000

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.factor)

    def wall_s(self, market_s: float) -> float:
        """Return how many wall seconds market_s of this clock take."""
        return market_s / self.factor

    def spec(self) -> str:
        """Return `factor:mono0:now0`, enough for another process to build the same clock."""
        return f"{self.factor!r}:{self._mono0}:{self._now0}"

    @classmethod
    def from_spec(cls, spec: str) -> ScaledClock:
        factor, mono0, now0 = spec.split(":")
        return cls(float(factor), (int(mono0), int(now0)))
