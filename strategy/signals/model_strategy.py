"""The model strategy: a promoted model's confidence against each coin's threshold.

On every `ScoreUpdated` of a symbol:

* per side, the confidence and its threshold are (`model.sides`):
  - `models`: long = the rise model's `confidence` against `model.thresholds[symbol]` (else the
    bundle's `threshold`); short = the fall model's `fall_confidence` against `fall_threshold`;
  - `combined`: score = rise - fall in [-1, +1]; long = score, short = -score, both against
    `model.thresholds[symbol]` (else `combined_threshold`);
* a side is *confirmed* once its confidence stayed >= threshold on every score for
  `confirm_s` seconds of exchange time (0: at once);
* flat: enter the single confirmed side (none, or both at once: nothing). Long on spot, long
  and short on futures (`entry.allow_short`). Strength = the confirmed confidence;
* in a position: leave when the held side's confidence < exit level (`model.exit_levels[symbol]`,
  else `exit_ratio * threshold`), or after `exits.max_hold_s` (also checked on every row and
  candle). Stop-loss, take-profits and trailing are passed on in the EnterRequest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.model import Market
from strategy.signals.config import StrategyConfig
from strategy.signals.context import StrategyContext
from strategy.signals.events import (
    CandleClosed,
    PositionClosed,
    PositionOpened,
    RowClosed,
    ScoreUpdated,
    StrategyEvent,
)
from strategy.signals.filters import blocking, evaluate_filters
from strategy.signals.intents import RequestGuard, enter_request, held_too_long
from strategy.signals.requests import ExitReason, ExitRequest, PositionSide, StrategyRequest


@dataclass(frozen=True, slots=True)
class SideScore:
    """One side's confidence and the threshold it is compared with."""

    side: PositionSide
    confidence: float
    threshold: float


def combined_score(rise: float, fall: float | None) -> float:
    """Return rise - fall, each clipped to [0, 1] (as strategy.models.score.combine_scores)."""
    # Not imported from strategy.models: that package loads LightGBM, which a strategy never needs.
    up = min(max(rise, 0.0), 1.0) if math.isfinite(rise) else 0.0
    down = min(max(fall, 0.0), 1.0) if fall is not None and math.isfinite(fall) else 0.0
    return up - down


class ModelStrategy:
    """Enter when the model's confidence holds above the coin's threshold; exit when it fades."""

    name = "model"

    def __init__(self, config: StrategyConfig, market: Market) -> None:
        self.config = config
        self.market = market
        self._model = config.model
        self._guard = RequestGuard(config.entry.cooldown_s)
        self._above_since_ms: dict[tuple[str, PositionSide], int] = {}

    @property
    def can_short(self) -> bool:
        return self.market is Market.USDM and self.config.entry.allow_short

    def side_scores(self, event: ScoreUpdated) -> tuple[SideScore, ...]:
        """Return the long (and, where a short is possible, short) confidence of a score."""
        cfg = self._model
        if cfg.sides == "combined":
            score = event.score if event.score is not None else combined_score(
                event.confidence, event.fall_confidence)
            threshold = cfg.thresholds.get(event.symbol, cfg.combined_threshold)
            scores = [SideScore(PositionSide.LONG, score, threshold)]
            if self.can_short:
                scores.append(SideScore(PositionSide.SHORT, -score, threshold))
            return tuple(scores)
        scores = [SideScore(PositionSide.LONG, event.confidence,
                            cfg.thresholds.get(event.symbol, event.threshold))]
        fall, fall_threshold = event.fall_confidence, event.fall_threshold
        if self.can_short and fall is not None and fall_threshold is not None:
            scores.append(SideScore(PositionSide.SHORT, fall, fall_threshold))
        return tuple(scores)

    def exit_level(self, symbol: str, threshold: float) -> float | None:
        """Return the confidence below which a held position is left (None: no such exit)."""
        level = self._model.exit_levels.get(symbol)
        if level is not None:
            return level
        return None if self._model.exit_ratio is None else self._model.exit_ratio * threshold

    def on_event(self, event: StrategyEvent, ctx: StrategyContext) -> list[StrategyRequest]:
        """React to one event; return the requests for the risk gate (often none)."""
        self._guard.observe(event)
        if isinstance(event, ScoreUpdated):
            return self._on_score(event, ctx)
        if isinstance(event, RowClosed | CandleClosed):
            position = ctx.position(event.symbol)
            if position is not None and held_too_long(position, ctx.now_ms, self.config.exits):
                return self._exit(event.symbol, ExitReason.MAX_HOLD, ctx, None)
        elif isinstance(event, PositionOpened | PositionClosed):
            # A new position, or a new chance after one: confirmation starts over.
            for side in PositionSide:
                self._above_since_ms.pop((event.symbol, side), None)
        return []

    def _exit(
        self, symbol: str, reason: ExitReason, ctx: StrategyContext, confidence: float | None
    ) -> list[StrategyRequest]:
        if not self._guard.may_exit(symbol, ctx.now_ms):
            return []
        self._guard.exited(symbol, ctx.now_ms)
        return [ExitRequest(symbol, reason, ctx.now_ms, confidence)]

    def _on_score(self, event: ScoreUpdated, ctx: StrategyContext) -> list[StrategyRequest]:
        symbol = event.symbol
        scores = self.side_scores(event)
        for s in scores:
            key = (symbol, s.side)
            if s.confidence >= s.threshold:
                self._above_since_ms.setdefault(key, event.ts_ms)
            else:
                self._above_since_ms.pop(key, None)
        position = ctx.position(symbol)
        if position is not None:
            if held_too_long(position, ctx.now_ms, self.config.exits):
                return self._exit(symbol, ExitReason.MAX_HOLD, ctx, None)
            for s in scores:
                level = self.exit_level(symbol, s.threshold)
                if s.side is position.side and level is not None and s.confidence < level:
                    return self._exit(symbol, ExitReason.CONFIDENCE, ctx, s.confidence)
            return []
        confirm_ms = self._model.confirm_s * 1000
        confirmed = [
            s for s in scores
            if (since := self._above_since_ms.get((symbol, s.side))) is not None
            and event.ts_ms - since >= confirm_ms
        ]
        if len(confirmed) != 1 or not self._guard.may_enter(symbol, ctx.now_ms):
            return []
        chosen = confirmed[0]
        if self.config.entry.require_valid_book and not ctx.is_book_valid(symbol):
            return []
        verdicts = evaluate_filters(symbol, ctx.market_context(symbol), ctx.sentiment, ctx.now_ms,
                                    self.config.filters)
        if blocking(verdicts, chosen.side):
            return []
        request = enter_request(
            ctx=ctx, symbol=symbol, side=chosen.side, confidence=chosen.confidence,
            threshold=chosen.threshold, contributions=event.contributions, reason="model",
            entry=self.config.entry, exits=self.config.exits,
        )
        if request is None:
            return []
        self._guard.entered(symbol, ctx.now_ms)
        return [request]
