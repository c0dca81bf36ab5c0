"""What a strategy reacts to: closed rows and candles, model scores, position changes.

These are the strategy's inputs, emitted by the composition root after the market-data fold,
the model scorer and the portfolio have done their work. The data itself is not in the event:
the strategy reads it from the `StrategyContext` passed alongside (rings, features, positions).
Frozen values; `ts_ms` is exchange time (the second or minute the row or candle opened, the
time of the scored vector, the fill time of a position change).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from strategy.signals.requests import PositionSide


@dataclass(frozen=True, slots=True)
class RowClosed:
    """The per-second row of `symbol` opening at `ts_ms` is closed and in the rows ring."""

    symbol: str
    ts_ms: int


@dataclass(frozen=True, slots=True)
class CandleClosed:
    """The one-minute candle of `symbol` opening at `ts_ms` is closed and in the candles ring."""

    symbol: str
    ts_ms: int


@dataclass(frozen=True, slots=True)
class ScoreUpdated:
    """The model scored the newest feature vector of `symbol`.

    `confidence` is the rise model's buy confidence in [0, 1] with its bundle `threshold`.
    On futures a fall model may add `fall_confidence` / `fall_threshold` (its confidence that
    the price falls). `score` is the combined rise - fall in [-1, +1] (strategy.models.score).
    """

    symbol: str
    confidence: float
    threshold: float
    contributions: tuple[tuple[str, float], ...]
    ts_ms: int
    fall_confidence: float | None = None
    fall_threshold: float | None = None
    score: float | None = None


@dataclass(frozen=True, slots=True)
class PositionOpened:
    """A position on `symbol` was opened (its entry order filled, at least partly)."""

    symbol: str
    side: PositionSide
    quantity: Decimal
    entry_price: Decimal
    ts_ms: int


@dataclass(frozen=True, slots=True)
class PositionClosed:
    """The position on `symbol` is flat again (exit, stop, take-profit or liquidation)."""

    symbol: str
    ts_ms: int
    reason: str = ""


StrategyEvent = RowClosed | CandleClosed | ScoreUpdated | PositionOpened | PositionClosed
