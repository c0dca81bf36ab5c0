"""The vote strategy: twelve indicator signals, weighted by regime, against a threshold.

On every closed one-minute candle of a symbol: take the last `window_candles` candles, detect
the regime, let every signal with a weight > 0 vote, combine the votes (strategy.signals.votes)
and compare the confidence with `threshold`: long at `confidence >= threshold`, short (futures
only) at `confidence <= -threshold`. An open position is left when the vote turns against it
(`side * confidence <= -exit_confidence`) or when it is held `max_hold_s`; the risk gate owns
stops, take-profits and trailing. Nothing happens before the longest look-back (warm-up).

It is the default when no model is promoted, so a new user trades on paper at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.model import Market
from strategy.signals.bars import Bars
from strategy.signals.config import StrategyConfig, VoteConfig
from strategy.signals.context import StrategyContext
from strategy.signals.events import CandleClosed, RowClosed, StrategyEvent
from strategy.signals.filters import FilterVerdict, blocking, evaluate_filters
from strategy.signals.intents import RequestGuard, enter_request, held_too_long
from strategy.signals.regime import RegimeReading, detect_regime
from strategy.signals.requests import ExitReason, ExitRequest, PositionSide, StrategyRequest
from strategy.signals.signals_price import (
    atr_momentum,
    bb_squeeze,
    breakout_retest,
    rsi_reversion,
    vwap_pullback,
    vwap_reversion,
)
from strategy.signals.signals_structure import (
    book_imbalance,
    cvd,
    ema_pinch,
    fair_value_gap,
    swing_failure,
    volume_poc,
)
from strategy.signals.votes import SIGNAL_NAMES, Vote, VoteTally, combine_votes

SIGNALS: dict[str, Callable[[Bars, Any], Vote]] = {
    "bb_squeeze": bb_squeeze,
    "vwap_pullback": vwap_pullback,
    "vwap_reversion": vwap_reversion,
    "breakout_retest": breakout_retest,
    "atr_momentum": atr_momentum,
    "rsi_reversion": rsi_reversion,
    "swing_failure": swing_failure,
    "ema_pinch": ema_pinch,
    "cvd": cvd,
    "fair_value_gap": fair_value_gap,
    "poc": volume_poc,
    "book_imbalance": book_imbalance,
}
assert tuple(SIGNALS) == SIGNAL_NAMES


def evaluate_votes(bars: Bars, cfg: VoteConfig) -> tuple[VoteTally, RegimeReading] | None:
    """Vote on the last candle of `bars`; None during warm-up (shorter than the look-back)."""
    if len(bars) < cfg.warmup_candles:
        return None
    reading = detect_regime(bars, cfg.regime)
    if reading is None:
        return None
    votes = [SIGNALS[name](bars, getattr(cfg.signals, name)) for name in cfg.active_signals]
    tally = combine_votes(votes, cfg.weights, cfg.multipliers[reading.regime], reading.regime)
    return tally, reading


@dataclass(frozen=True, slots=True)
class VoteDecision:
    """What the strategy made of a symbol's last candle (for logs and the dashboard)."""

    symbol: str
    ts_ms: int
    action: str  # warmup | hold | flat | enter | exit | blocked | cooldown
    tally: VoteTally | None = None
    regime: RegimeReading | None = None
    threshold: float = 0.0
    filters: tuple[FilterVerdict, ...] = ()
    blocked_by: tuple[str, ...] = ()


class VoteStrategy:
    """Enter on a weighted vote of indicator signals; leave on a reversed vote or max hold."""

    name = "vote"

    def __init__(self, config: StrategyConfig, market: Market) -> None:
        self.config = config
        self.market = market
        self._vote = config.vote
        self._warmup_candles = config.vote.warmup_candles
        self._guard = RequestGuard(config.entry.cooldown_s)
        self.decisions: dict[str, VoteDecision] = {}

    @property
    def can_short(self) -> bool:
        return self.market is Market.USDM and self.config.entry.allow_short

    def on_event(self, event: StrategyEvent, ctx: StrategyContext) -> list[StrategyRequest]:
        """React to one event; return the requests for the risk gate (often none)."""
        self._guard.observe(event)
        if isinstance(event, CandleClosed):
            return self._on_candle(event, ctx)
        if isinstance(event, RowClosed):
            return self._max_hold_exit(event.symbol, ctx)
        return []

    def _max_hold_exit(self, symbol: str, ctx: StrategyContext) -> list[StrategyRequest]:
        position = ctx.position(symbol)
        if position is None or not held_too_long(position, ctx.now_ms, self.config.exits):
            return []
        return self._exit(symbol, ExitReason.MAX_HOLD, ctx, None)

    def _exit(
        self, symbol: str, reason: ExitReason, ctx: StrategyContext, confidence: float | None
    ) -> list[StrategyRequest]:
        if not self._guard.may_exit(symbol, ctx.now_ms):
            return []
        self._guard.exited(symbol, ctx.now_ms)
        return [ExitRequest(symbol, reason, ctx.now_ms, confidence)]

    def _on_candle(self, event: CandleClosed, ctx: StrategyContext) -> list[StrategyRequest]:
        symbol = event.symbol
        ring = ctx.candles.get(symbol)
        bars = None
        if ring is not None and len(ring) >= self._warmup_candles:
            bars = Bars.from_ring(ring, self._vote.window_candles)
        result = evaluate_votes(bars, self._vote) if bars is not None else None
        if bars is None or result is None:
            self._decide(symbol, ctx, "warmup")
            return self._max_hold_exit(symbol, ctx)
        tally, reading = result
        confidence = tally.confidence
        position = ctx.position(symbol)
        if position is not None:
            if held_too_long(position, ctx.now_ms, self.config.exits):
                self._decide(symbol, ctx, "exit", tally, reading)
                return self._exit(symbol, ExitReason.MAX_HOLD, ctx, confidence)
            turned = self._vote.exit_confidence is not None and (
                position.side.sign * confidence <= -self._vote.exit_confidence
            )
            self._decide(symbol, ctx, "exit" if turned else "hold", tally, reading)
            return self._exit(symbol, ExitReason.REVERSAL, ctx, confidence) if turned else []
        threshold = self._vote.threshold
        side = None
        if confidence >= threshold:
            side = PositionSide.LONG
        elif confidence <= -threshold and self.can_short:
            side = PositionSide.SHORT
        if side is None:
            self._decide(symbol, ctx, "flat", tally, reading)
            return []
        if not self._guard.may_enter(symbol, ctx.now_ms):
            self._decide(symbol, ctx, "cooldown", tally, reading)
            return []
        verdicts = evaluate_filters(symbol, ctx.market_context(symbol), ctx.sentiment, ctx.now_ms,
                                    self.config.filters)
        blocked_by = blocking(verdicts, side)
        if self.config.entry.require_valid_book and not ctx.is_book_valid(symbol):
            blocked_by = ("book", *blocked_by)
        if blocked_by:
            self._decide(symbol, ctx, "blocked", tally, reading, verdicts, blocked_by)
            return []
        atr = float(bars.atr(self.config.exits.atr_period)[-1])
        request = enter_request(
            ctx=ctx, symbol=symbol, side=side, confidence=confidence, threshold=threshold,
            contributions=tally.contributions, reason="vote", entry=self.config.entry,
            exits=self.config.exits, atr=atr if np.isfinite(atr) else None,
        )
        if request is None:
            self._decide(symbol, ctx, "flat", tally, reading)
            return []
        self._guard.entered(symbol, ctx.now_ms)
        self._decide(symbol, ctx, "enter", tally, reading, verdicts)
        return [request]

    def _decide(
        self,
        symbol: str,
        ctx: StrategyContext,
        action: str,
        tally: VoteTally | None = None,
        reading: RegimeReading | None = None,
        filters: tuple[FilterVerdict, ...] = (),
        blocked_by: tuple[str, ...] = (),
    ) -> None:
        self.decisions[symbol] = VoteDecision(symbol, ctx.now_ms, action, tally, reading,
                                              self._vote.threshold, filters, blocked_by)
