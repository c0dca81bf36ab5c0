"""Turning a decision into requests: per-symbol cooldowns, protection parameters, holding time.

Shared by the vote and the model strategy. `RequestGuard` keeps a strategy from repeating itself
while the risk gate and the venue act on its last request: after an `EnterRequest` no new entry
for that symbol until `cooldown_s` of exchange time passed (a rejected entry may then be asked
again) or a position opened; after a close, `cooldown_s` before the next entry; after an
`ExitRequest`, no repeat until the position closed or `cooldown_s` passed.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import talib

from strategy.signals.config import EntryConfig, ExitConfig
from strategy.signals.context import PositionView, StrategyContext
from strategy.signals.events import PositionClosed, PositionOpened, StrategyEvent
from strategy.signals.requests import EnterRequest, PositionSide, TakeProfitLevel

_NEVER = -(2**62)


def to_decimal(value: float) -> Decimal:
    """Convert a float price or distance to the Decimal of its shortest repr (no binary tail)."""
    return Decimal(repr(float(value)))


class RequestGuard:
    """Per-symbol memory of the last requests, so each decision is asked for once."""

    __slots__ = ("_cooldown_ms", "_entry_blocked_until", "_exit_sent_ms")

    def __init__(self, cooldown_s: int) -> None:
        self._cooldown_ms = cooldown_s * 1000
        self._entry_blocked_until: dict[str, int] = {}
        self._exit_sent_ms: dict[str, int] = {}

    def observe(self, event: StrategyEvent) -> None:
        """Update from a position event (other events are ignored)."""
        if isinstance(event, PositionOpened):
            self._entry_blocked_until.pop(event.symbol, None)
            self._exit_sent_ms.pop(event.symbol, None)
        elif isinstance(event, PositionClosed):
            self._exit_sent_ms.pop(event.symbol, None)
            self._entry_blocked_until[event.symbol] = event.ts_ms + self._cooldown_ms

    def may_enter(self, symbol: str, now_ms: int) -> bool:
        return now_ms >= self._entry_blocked_until.get(symbol, _NEVER)

    def entered(self, symbol: str, now_ms: int) -> None:
        self._entry_blocked_until[symbol] = now_ms + max(self._cooldown_ms, 1)

    def may_exit(self, symbol: str, now_ms: int) -> bool:
        sent = self._exit_sent_ms.get(symbol)
        return sent is None or now_ms >= sent + max(self._cooldown_ms, 1)

    def exited(self, symbol: str, now_ms: int) -> None:
        self._exit_sent_ms[symbol] = now_ms


def held_too_long(position: PositionView, now_ms: int, exits: ExitConfig) -> bool:
    """True once a position has been held for the maximum holding time (exchange time)."""
    return exits.max_hold_s is not None and now_ms - position.entry_ts_ms >= exits.max_hold_s * 1000


def stop_distance(price: float, atr: float | None, exits: ExitConfig) -> Decimal | None:
    """Return the stop distance in price units: stop_atr * ATR when known, else stop_loss_pct."""
    if exits.stop_atr is not None and atr is not None and np.isfinite(atr) and atr > 0:
        return to_decimal(exits.stop_atr * atr)
    if exits.stop_loss_pct is not None:
        return to_decimal(price * exits.stop_loss_pct / 100.0)
    return None


def candle_atr(ctx: StrategyContext, symbol: str, period: int) -> float | None:
    """Return Wilder's ATR of the symbol's last candles (over 10 periods of them), if known."""
    ring = ctx.candles.get(symbol)
    if ring is None or len(ring) <= period:
        return None
    n = 10 * period
    high, low, close = (np.ascontiguousarray(ring.window(c, n), dtype=np.float64)
                        for c in ("high", "low", "close"))
    value = float(talib.ATR(high, low, close, timeperiod=period)[-1])
    return value if np.isfinite(value) else None


def enter_request(
    *,
    ctx: StrategyContext,
    symbol: str,
    side: PositionSide,
    confidence: float,
    threshold: float,
    contributions: tuple[tuple[str, float], ...],
    reason: str,
    entry: EntryConfig,
    exits: ExitConfig,
    atr: float | None = None,
) -> EnterRequest | None:
    """Build the entry request for a decision; None without a price or a stop distance yet."""
    price = ctx.last_price(symbol)
    if price is None:
        return None
    if atr is None and exits.stop_atr is not None:
        atr = candle_atr(ctx, symbol, exits.atr_period)
    stop = stop_distance(price, atr, exits)
    if stop is None:  # an ATR-only stop before the candles know the ATR
        return None
    take_profits = tuple(
        TakeProfitLevel(to_decimal(price * tp.pct / 100.0), to_decimal(tp.fraction))
        for tp in exits.take_profits
    )
    trailing = to_decimal(exits.trailing_stop_pct) if exits.trailing_stop_pct is not None else None
    return EnterRequest(
        symbol=symbol,
        side=side,
        strength=min(1.0, max(0.0, abs(confidence))),
        reference_price=to_decimal(price),
        equity_fraction=entry.equity_fraction,
        stop_distance=stop,
        take_profits=take_profits,
        trailing_stop_pct=trailing,
        reason=reason,
        confidence=confidence,
        threshold=threshold,
        contributions=contributions,
        ts_ms=ctx.now_ms,
    )
