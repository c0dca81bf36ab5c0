"""Pre-trade checks: may this entry be opened now? Pure functions of plain views, no I/O, no clock.

Each rule is one function returning a `Denied` or None; `check_entry` runs them in a fixed order
(the cheapest, most general reasons first) and returns the first denial, or `Allowed`.
All times are exchange-time milliseconds; "today" is the UTC day of `now_ms`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from engine.model import Side
from risk.config import RiskConfig
from risk.state import TradingState


class DenialReason(enum.StrEnum):
    TRADING_HALTED = "TRADING_HALTED"
    TRADING_REDUCING = "TRADING_REDUCING"
    MODEL_NOT_WARM = "MODEL_NOT_WARM"
    BOOK_INVALID = "BOOK_INVALID"
    BOOK_STALE = "BOOK_STALE"
    SYMBOL_NOT_TRADING = "SYMBOL_NOT_TRADING"
    SHORT_NOT_SUPPORTED = "SHORT_NOT_SUPPORTED"  # spot cannot open a short
    POSITION_EXISTS = "POSITION_EXISTS"
    OPPOSITE_POSITION = "OPPOSITE_POSITION"
    MAX_OPEN_POSITIONS = "MAX_OPEN_POSITIONS"
    COOLDOWN_AFTER_STOP = "COOLDOWN_AFTER_STOP"
    DAILY_LOSS_LIMIT = "DAILY_LOSS_LIMIT"
    DCA_LIMIT = "DCA_LIMIT"
    INVALID_REQUEST = "INVALID_REQUEST"
    FILTER_REJECT = "FILTER_REJECT"
    EXIT_WORKING = "EXIT_WORKING"  # an exit for this position is already on its way


@dataclass(frozen=True, slots=True)
class Allowed:
    def __bool__(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Denied:
    """Why an entry may not be opened; detail is a human sentence for logs and alerts."""

    reason: DenialReason
    detail: str = ""

    def __bool__(self) -> bool:
        return False


Decision = Allowed | Denied


@dataclass(frozen=True, slots=True)
class PositionView:
    """One open position (or an entry order still working, which counts as one)."""

    symbol: str
    side: Side
    quantity: Decimal
    entry_price: Decimal


@dataclass(frozen=True, slots=True)
class AccountView:
    """What the portfolio knows about the account, as of now."""

    equity: Decimal
    day_start_equity: Decimal  # equity at 00:00 UTC (or at start-up if later)
    realized_pnl_today: Decimal = Decimal(0)  # net of fees; negative is a loss
    positions: tuple[PositionView, ...] = ()
    pending_entries: tuple[PositionView, ...] = ()  # entry orders sent but not yet filled
    last_stop_out_ms: Mapping[str, int] = field(default_factory=dict)  # per symbol
    open_orders: Mapping[str, int] = field(default_factory=dict)  # per symbol, all types
    open_algo_orders: Mapping[str, int] = field(default_factory=dict)  # per symbol, conditional

    def exposure(self, symbol: str) -> PositionView | None:
        """Return the position or working entry on a symbol, if any."""
        for view in (*self.positions, *self.pending_entries):
            if view.symbol == symbol:
                return view
        return None

    @property
    def open_symbols(self) -> frozenset[str]:
        return frozenset(v.symbol for v in (*self.positions, *self.pending_entries))


@dataclass(frozen=True, slots=True)
class MarketView:
    """Health of one symbol's inputs."""

    symbol: str
    book_valid: bool
    last_book_update_ms: int | None  # exchange time of the last applied book event
    model_warm: bool
    symbol_trading: bool = True  # exchangeInfo status == TRADING


@dataclass(frozen=True, slots=True)
class EntryContext:
    """Everything one entry check looks at."""

    symbol: str
    side: Side
    account: AccountView
    market: MarketView
    state: TradingState
    now_ms: int
    shorting_allowed: bool  # False on spot


Rule = Callable[[EntryContext, RiskConfig], Denied | None]


def trading_state_rule(ctx: EntryContext, config: RiskConfig) -> Denied | None:
    if ctx.state is TradingState.HALTED:
        return Denied(DenialReason.TRADING_HALTED, "trading is halted: exits only")
    if ctx.state is TradingState.REDUCING:
        return Denied(DenialReason.TRADING_REDUCING, "trading is reducing: no new entries")
    return None


def model_warm_rule(ctx: EntryContext, config: RiskConfig) -> Denied | None:
    if not ctx.market.model_warm:
        return Denied(DenialReason.MODEL_NOT_WARM, f"{ctx.symbol}: model has not seen enough rows")
    return None


def book_valid_rule(ctx: EntryContext, config: RiskConfig) -> Denied | None:
    if not ctx.market.book_valid:
        return Denied(DenialReason.BOOK_INVALID, f"{ctx.symbol}: order book not in sync")
    return None


def book_fresh_rule(ctx: EntryContext, config: RiskConfig) -> Denied | None:
    last = ctx.market.last_book_update_ms
    max_age_ms = int(config.max_book_age_s * 1000)
    if last is None or ctx.now_ms - last > max_age_ms:
        age = "never updated" if last is None else f"{ctx.now_ms - last} ms old"
        return Denied(DenialReason.BOOK_STALE, f"{ctx.symbol}: book {age} (max {max_age_ms} ms)")
    return None


def symbol_trading_rule(ctx: EntryContext, config: RiskConfig) -> Denied | None:
    if not ctx.market.symbol_trading:
        return Denied(
            DenialReason.SYMBOL_NOT_TRADING, f"{ctx.symbol}: exchange status is not TRADING"
        )
    return None


def short_rule(ctx: EntryContext, config: RiskConfig) -> Denied | None:
    if ctx.side is Side.SELL and not ctx.shorting_allowed:
        return Denied(DenialReason.SHORT_NOT_SUPPORTED, f"{ctx.symbol}: spot cannot open a short")
    return None


def one_position_rule(ctx: EntryContext, config: RiskConfig) -> Denied | None:
    existing = ctx.account.exposure(ctx.symbol)
    if existing is None:
        return None
    if existing.side is ctx.side:
        return Denied(
            DenialReason.POSITION_EXISTS, f"{ctx.symbol}: a {existing.side} position is open"
        )
    return Denied(
        DenialReason.OPPOSITE_POSITION,
        f"{ctx.symbol}: a {existing.side} position is open; exit it before a {ctx.side}",
    )


def max_positions_rule(ctx: EntryContext, config: RiskConfig) -> Denied | None:
    count = len(ctx.account.open_symbols)
    if count >= config.max_open_positions:
        return Denied(
            DenialReason.MAX_OPEN_POSITIONS,
            f"{count} positions open, limit {config.max_open_positions}",
        )
    return None


def cooldown_rule(ctx: EntryContext, config: RiskConfig) -> Denied | None:
    stopped_ms = ctx.account.last_stop_out_ms.get(ctx.symbol)
    cooldown_ms = config.cooldown_after_stop_s * 1000
    if stopped_ms is not None and ctx.now_ms - stopped_ms < cooldown_ms:
        left_s = (cooldown_ms - (ctx.now_ms - stopped_ms)) / 1000
        return Denied(
            DenialReason.COOLDOWN_AFTER_STOP,
            f"{ctx.symbol}: stopped out, {left_s:.0f} s of cooldown left",
        )
    return None


def daily_loss_rule(ctx: EntryContext, config: RiskConfig) -> Denied | None:
    limit = ctx.account.day_start_equity * config.daily_loss_limit_pct / 100
    loss = -ctx.account.realized_pnl_today
    if loss >= limit:
        return Denied(
            DenialReason.DAILY_LOSS_LIMIT, f"realised loss today {loss} reached limit {limit}"
        )
    return None


ENTRY_RULES: tuple[Rule, ...] = (
    trading_state_rule,
    symbol_trading_rule,
    short_rule,
    model_warm_rule,
    book_valid_rule,
    book_fresh_rule,
    one_position_rule,
    max_positions_rule,
    cooldown_rule,
    daily_loss_rule,
)
# Adding to an existing position (DCA): the same, minus the rules an open position breaks.
ADD_RULES: tuple[Rule, ...] = tuple(
    r for r in ENTRY_RULES if r not in (one_position_rule, max_positions_rule)
)


def check_entry(
    ctx: EntryContext,
    config: RiskConfig,
    rules: tuple[Rule, ...] = ENTRY_RULES,
) -> Decision:
    """Return Allowed, or the first rule's denial of opening this entry now."""
    for rule in rules:
        if (denied := rule(ctx, config)) is not None:
            return denied
    return Allowed()
