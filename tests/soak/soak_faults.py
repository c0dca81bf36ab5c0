"""Every fault the simulator knows, injected at random moments of market time, counted by kind.

Kinds are drawn from a shuffled bag (each kind once per round, in a random order), so even a short
run injects every kind a few times. Parameters are drawn in market time; the one fault that must
outlast a wall-clock limit (a held placement answer past the engine's 10 s REST timeout) is scaled
by the clock's speed.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from engine.model import Market
from exchange.sim.server import SimServer

MARKET_DATA_KINDS = ("gap", "duplicate", "reorder", "delay", "stall", "drop", "server_shutdown")
TRADING_KINDS = (
    "http_429", "http_418", "http_5xx", "timestamp_error", "order_unknown", "order_timeout",
    "duplicate_ack", "user_stream_drop", "listen_key_expire",
)  # fmt: skip
REST_TIMEOUT_WALL_S = 10.0  # BinanceRest's default request timeout (wall clock, not scaled)


def kinds_for(market: Market) -> tuple[str, ...]:
    """Return the fault kinds that apply to a market (listenKeys exist on USDⓈ-M only)."""
    kinds = MARKET_DATA_KINDS + TRADING_KINDS
    return kinds if market is Market.USDM else tuple(k for k in kinds if k != "listen_key_expire")


@dataclass
class FaultInjector:
    """Draws and injects faults into one simulator; `injected` counts them by kind."""

    sim: SimServer
    kinds: tuple[str, ...]
    rng: random.Random
    clock_factor: float = 1.0  # market seconds per wall second
    injected: Counter[str] = field(default_factory=Counter)
    history: list[tuple[int, str, str]] = field(default_factory=list)  # (server ms, kind, detail)
    _bag: list[str] = field(default_factory=list)

    def next_kind(self) -> str:
        if not self._bag:
            self._bag = list(self.kinds)
            self.rng.shuffle(self._bag)
        return self._bag.pop()

    def inject(self, kind: str | None = None) -> str:
        """Inject one fault (the next from the bag unless named); return what was done."""
        kind = kind or self.next_kind()
        detail = self._apply(kind)
        self.injected[kind] += 1
        self.history.append((self.sim.server_time_ms(), kind, detail))
        return detail

    def _apply(self, kind: str) -> str:
        sim, rng = self.sim, self.rng
        faults = sim.faults
        trading = sim.trading.faults if sim.trading is not None else None
        symbol = rng.choice(sim.depth_symbols())
        if kind == "gap":
            n = rng.randint(1, 3)
            faults.gap(symbol, n)
            return f"{symbol} n={n}"
        if kind == "duplicate":
            n = rng.randint(1, 5)
            faults.duplicate(symbol if rng.random() < 0.5 else None, n)
            return f"n={n}"
        if kind == "reorder":
            faults.reorder(symbol)
            return symbol
        if kind == "delay":
            ms = rng.randint(200, 3000)  # market ms: the replay holds, then bursts
            faults.delay(ms)
            return f"{ms} ms"
        if kind == "stall":
            seconds = round(rng.uniform(1.0, 30.0), 2)  # past 15 s the depth watchdog fires
            pings = rng.random() < 0.5
            faults.stall(seconds, pings)
            return f"{seconds} s pings={pings}"
        if kind == "drop":
            return f"{faults.drop_connections()} connections"
        if kind == "server_shutdown":
            after_ms = rng.randint(100, 3000)
            return f"{faults.server_shutdown(after_ms)} connections after {after_ms} ms"
        if kind.startswith("http_"):
            status = {"http_429": 429, "http_418": 418}.get(kind) or rng.choice((500, 502, 503))
            n = 1 if status == 418 else rng.randint(1, 3)
            faults.http_error(status, n)
            return f"{status} n={n}"
        assert trading is not None, "trading faults need SimServer(trading=True)"
        if kind == "timestamp_error":
            n = rng.randint(1, 2)
            trading.timestamp_error(n)
            return f"n={n}"
        if kind == "order_unknown":
            status = rng.choice((500, 502, 503))
            trading.order_unknown(1, status)
            return f"{status}"
        if kind == "order_timeout":
            # held past the engine's wall-clock REST timeout: in market seconds, times the speed
            seconds = round((REST_TIMEOUT_WALL_S + rng.uniform(0.5, 2.0)) * self.clock_factor, 1)
            trading.order_timeout(seconds, 1)
            return f"answer held {seconds} market s"
        if kind == "duplicate_ack":
            trading.duplicate_ack(1)
            return "n=1"
        if kind == "user_stream_drop":
            return f"{trading.user_stream_drop()} streams"
        if kind == "listen_key_expire":
            return f"{trading.listen_key_expire()} keys"
        raise ValueError(f"unknown fault kind {kind}")

    def clear_pending(self) -> None:
        """Forget faults injected but not consumed yet (before the final settle)."""
        self.sim.faults.http_errors.clear()
        self.sim.faults.gaps.clear()
        self.sim.faults.duplicates.clear()
        self.sim.faults.reorders.clear()
        if self.sim.trading is not None:
            t = self.sim.trading.faults
            t.timestamp_errors, t.duplicate_acks = 0, 0
            t.unknown_outcomes.clear()
            t.timeouts.clear()
