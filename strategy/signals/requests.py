"""What a strategy asks for: trading intents for the risk gate, never orders.

A strategy does not size, quantise or place orders. It says *what* it wants (enter long or short,
leave a position) and *why*; the risk gate (risk/) turns an `EnterRequest` into a sized,
filter-quantised `SubmitOrder` (engine/orders.py), attaches the protective orders described here
once the entry fills, and turns an `ExitRequest` into a reduce-only close. Everything here is a
frozen value; prices are in quote units of the symbol, times are exchange-time ms.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal

from engine.model import Side


class PositionSide(enum.StrEnum):
    """Direction of a position (long on spot and futures, short on futures only)."""

    LONG = "long"
    SHORT = "short"

    @property
    def entry_side(self) -> Side:
        """Return the order side that opens a position of this direction."""
        return Side.BUY if self is PositionSide.LONG else Side.SELL

    @property
    def exit_side(self) -> Side:
        """Return the order side that closes a position of this direction."""
        return Side.SELL if self is PositionSide.LONG else Side.BUY

    @property
    def sign(self) -> int:
        return 1 if self is PositionSide.LONG else -1


@dataclass(frozen=True, slots=True)
class TakeProfitLevel:
    """One take-profit target: `distance` from the entry price, closing `fraction` of it."""

    distance: Decimal  # price units, > 0, away from entry in the position's favour
    fraction: Decimal  # of the filled entry quantity, in (0, 1]

    def __post_init__(self) -> None:
        if self.distance <= 0:
            raise ValueError(f"take-profit distance must be > 0: {self.distance}")
        if not 0 < self.fraction <= 1:
            raise ValueError(f"take-profit fraction must be in (0, 1]: {self.fraction}")


@dataclass(frozen=True, slots=True)
class EnterRequest:
    """Open a position on `symbol` in direction `side`; the risk gate sizes and vets it.

    Sizing contract: the strategy asks for `equity_fraction` of equity at full strength; the
    recommended notional is `equity * equity_fraction * strength`, capped by the risk limits.
    Protection (attached by the risk gate once the entry fills, measured from the fill price):
    stop-loss at `stop_distance` against the position, take-profits at `take_profits`, and a
    trailing stop with callback `trailing_stop_pct`. A stop is always asked for; no take-profit
    (empty tuple) or no trailing stop (None) is a valid request.
    """

    symbol: str
    side: PositionSide
    strength: float  # in [0, 1]: the signal's conviction (the confidence of the entering side)
    reference_price: Decimal  # last close the decision was made on (to size before the fill)
    equity_fraction: float  # in (0, 1]
    stop_distance: Decimal  # price units > 0 from the entry, against the position (always set)
    take_profits: tuple[TakeProfitLevel, ...]
    trailing_stop_pct: Decimal | None  # callback rate in percent (Binance: 0.1 .. 10 on futures)
    reason: str  # e.g. "vote", "model"; a short machine-readable word
    confidence: float  # the signed or unsigned score that crossed the threshold
    threshold: float
    contributions: tuple[tuple[str, float], ...]  # (signal or feature, share of the score)
    ts_ms: int  # exchange time of the decision

    def __post_init__(self) -> None:
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1]: {self.strength}")
        if not 0.0 < self.equity_fraction <= 1.0:
            raise ValueError(f"equity_fraction must be in (0, 1]: {self.equity_fraction}")
        if self.reference_price <= 0:
            raise ValueError(f"reference_price must be > 0: {self.reference_price}")
        if self.stop_distance <= 0:
            raise ValueError(f"stop_distance must be > 0: {self.stop_distance}")
        if self.trailing_stop_pct is not None and self.trailing_stop_pct <= 0:
            raise ValueError(f"trailing_stop_pct must be > 0: {self.trailing_stop_pct}")
        if sum((tp.fraction for tp in self.take_profits), Decimal(0)) > 1:
            raise ValueError("take-profit fractions add up to more than 1")


class ExitReason(enum.StrEnum):
    """Why a strategy asks to leave a position (the protective orders exit on their own)."""

    CONFIDENCE = "confidence"  # the score fell below the exit level
    REVERSAL = "reversal"  # the vote turned against the position
    MAX_HOLD = "max_hold"  # held for the maximum holding time


@dataclass(frozen=True, slots=True)
class ExitRequest:
    """Close the whole open position on `symbol` (reduce-only, market) and cancel its protection."""

    symbol: str
    reason: ExitReason
    ts_ms: int
    confidence: float | None = None  # the score at the decision, when there is one


StrategyRequest = EnterRequest | ExitRequest
