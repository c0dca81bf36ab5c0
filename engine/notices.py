"""Notices: what a person watching the engine should hear about (Telegram, dashboard, logs).

The trading loop and the engine emit these frozen values to listeners; notifiers never reach into
engine state. Every trade notice says why: score, threshold, model bundle, top feature
contributions, stop and target.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

Contribution = tuple[str, float]  # (feature name, contribution to the score)


@dataclass(frozen=True, slots=True)
class SignalNotice:
    """A model or vote score crossed its threshold (or moved while above it)."""

    symbol: str
    ts_ms: int
    score: float  # [-1, +1]: positive = likely to rise
    threshold: float
    price: float
    bundle_id: str = ""
    contributions: tuple[Contribution, ...] = ()


@dataclass(frozen=True, slots=True)
class TradeNotice:
    """An order of a position filled: an entry, an exit, a stop-loss or a take-profit."""

    symbol: str
    ts_ms: int
    kind: Literal["entry", "exit", "stop_loss", "take_profit", "flatten"]
    side: str  # BUY | SELL
    price: Decimal
    quantity: Decimal
    reason: str = ""
    score: float | None = None
    threshold: float | None = None
    bundle_id: str = ""
    contributions: tuple[Contribution, ...] = ()
    stop_price: Decimal | None = None
    target_price: Decimal | None = None
    realized_pnl: Decimal | None = None  # on exits: PnL of the closed quantity, net of fees


@dataclass(frozen=True, slots=True)
class StateNotice:
    """The trading state changed (ACTIVE / REDUCING / HALTED) and why."""

    ts_ms: int
    from_state: str
    to_state: str
    reason: str


@dataclass(frozen=True, slots=True)
class ErrorNotice:
    """Something failed; `needs_person` when only a human can fix it (keys, bans, halts)."""

    ts_ms: int
    component: str
    message: str
    needs_person: bool = False


@dataclass(frozen=True, slots=True)
class MismatchNotice:
    """Reconciliation found the venue and the local view disagree."""

    ts_ms: int
    symbol: str
    detail: str


@dataclass(frozen=True, slots=True)
class DailySummaryNotice:
    """Once per UTC day: equity, the day's PnL, trades and win rate."""

    day: str  # YYYY-MM-DD (UTC)
    ts_ms: int
    equity: Decimal
    pnl: Decimal
    pnl_pct: float
    trades: int
    wins: int


Notice = SignalNotice | TradeNotice | StateNotice | ErrorNotice | MismatchNotice | DailySummaryNotice
