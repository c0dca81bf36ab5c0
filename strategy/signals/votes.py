"""Votes of the indicator signals and their weighted combination into one confidence.

Each signal returns a `Vote`: a direction (-1 sell, 0 no opinion, +1 buy) and a strength in
[0, 1]. In regime r, signal i counts with weight `w_i * m_{r,i}` (config weight times regime
multiplier) and the confidence is

    confidence = sum_i(w_i * m_{r,i} * d_i * s_i) / sum_i(w_i * m_{r,i})

summed over every evaluated signal, abstaining ones included: it lies in [-1, +1], reaches +1
only when every weighted signal says buy at full strength, and a lone signal cannot carry it.
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

SIGNAL_NAMES: tuple[str, ...] = (
    "bb_squeeze",
    "vwap_pullback",
    "vwap_reversion",
    "breakout_retest",
    "atr_momentum",
    "rsi_reversion",
    "swing_failure",
    "ema_pinch",
    "cvd",
    "fair_value_gap",
    "poc",
    "book_imbalance",
)


class Regime(enum.StrEnum):
    """Market state the vote weights adapt to (see strategy.signals.regime)."""

    TREND = "trend"
    FLAT = "flat"
    VOLATILE = "volatile"


@dataclass(frozen=True, slots=True)
class Vote:
    """One signal's opinion on the candle that just closed."""

    name: str
    direction: int  # -1, 0 or +1
    strength: float  # in [0, 1]; 0 when direction is 0

    def __post_init__(self) -> None:
        if self.direction not in (-1, 0, 1):
            raise ValueError(f"{self.name}: direction must be -1, 0 or +1, got {self.direction}")
        if not 0.0 <= self.strength <= 1.0 or math.isnan(self.strength):
            raise ValueError(f"{self.name}: strength must be in [0, 1], got {self.strength}")
        if self.direction == 0 and self.strength != 0.0:
            raise ValueError(f"{self.name}: an abstaining vote has strength 0")

    @classmethod
    def abstain(cls, name: str) -> Vote:
        return _abstention(name)

    @classmethod
    def of(cls, name: str, direction: int, strength: float) -> Vote:
        """Make a vote, clipping the strength into [0, 1] (and to 0 when direction is 0)."""
        if direction == 0 or not math.isfinite(strength):
            return cls(name, 0, 0.0)
        return cls(name, direction, min(1.0, max(0.0, float(strength))))

    @property
    def signed(self) -> float:
        return self.direction * self.strength


@functools.lru_cache(maxsize=256)
def _abstention(name: str) -> Vote:
    # Most votes on most candles are abstentions: share the (immutable) value per signal.
    return Vote(name, 0, 0.0)


@dataclass(frozen=True, slots=True)
class VoteTally:
    """The combined vote: confidence in [-1, 1] and each signal's share of it."""

    confidence: float
    regime: Regime
    votes: tuple[Vote, ...]
    contributions: tuple[tuple[str, float], ...]  # (signal, w*m*d*s / sum(w*m)); they add up


def combine_votes(
    votes: Iterable[Vote],
    weights: Mapping[Any, float],  # by signal name (config keys are a Literal of the names)
    multipliers: Mapping[Any, float],
    regime: Regime,
) -> VoteTally:
    """Combine votes by weight times regime multiplier into a confidence in [-1, 1]."""
    votes = tuple(votes)
    effective = [weights[v.name] * multipliers[v.name] for v in votes]
    total = sum(effective)
    if total <= 0:
        return VoteTally(0.0, regime, votes, tuple((v.name, 0.0) for v in votes))
    contributions = tuple(
        (v.name, w * v.signed / total) for v, w in zip(votes, effective, strict=True)
    )
    confidence = sum(c for _, c in contributions)
    return VoteTally(min(1.0, max(-1.0, confidence)), regime, votes, contributions)
