"""Accounts of the simulated venue: spot balances with locks, USDⓈ-M wallet with positions and margin.

Both accounts answer the same four questions the matching core asks: may this order rest
(`reserve`), may this taker execution happen (`check_taker`), what does a fill do to the account
(`apply_fill`, called *before* the order's filled quantity grows), and give back what an order
held (`release`). Fees are charged in the quote asset (spot) or the margin asset (futures).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from engine.model import Market, Side
from engine.orders import FundingPaid, OrderEvent
from exchange.base import Balance, VenuePosition
from exchange.simulated_orders import (
    FEE_QUANTUM,
    FeeSchedule,
    Reject,
    SimOrder,
    SimulatedVenueConfig,
    SymbolState,
)

_ZERO = Decimal(0)


class SpotAccount:
    """Free and locked balances per asset; no shorting: a SELL must hold its base quantity.

    Reserved at activation: every SELL locks its base quantity; a BUY with a limit price locks
    price * qty * (1 + max fee rate) of quote. Market-type BUYs (MARKET and untriggered
    STOP/TAKE_PROFIT/TRAILING markets) lock nothing; their cost is checked when they execute.
    """

    def __init__(self, balances: Mapping[str, Decimal], fees: FeeSchedule) -> None:
        self.free: dict[str, Decimal] = {a: Decimal(v) for a, v in balances.items()}
        self.locked: dict[str, Decimal] = {}
        self._fees = fees

    def _lock_amount(self, order: SimOrder, remaining: Decimal) -> tuple[str, Decimal]:
        inst = order.instrument
        if order.side is Side.SELL:
            return inst.base_asset, remaining
        price = order.intent.price
        if price is None:
            return inst.quote_asset, _ZERO
        return inst.quote_asset, price * remaining * (1 + self._fees.max_rate)

    def reserve(
        self, order: SimOrder, marks: Mapping[str, Decimal], at_trigger: bool = False
    ) -> Reject | None:
        """Lock what order needs to rest; return a reason when the account cannot."""
        if at_trigger:
            return None  # spot locks when a conditional order is placed, not when it triggers
        asset, amount = self._lock_amount(order, order.remaining)
        if amount <= 0:
            return None
        if self.free.get(asset, _ZERO) < amount:
            return Reject.INSUFFICIENT_BALANCE
        self.free[asset] -= amount
        self.locked[asset] = self.locked.get(asset, _ZERO) + amount
        order.reserved = amount
        return None

    def check_taker(
        self, order: SimOrder, qty: Decimal, notional: Decimal, marks: Mapping[str, Decimal]
    ) -> Reject | None:
        """Return a reason when the account cannot pay for a taker execution of qty for notional."""
        if order.side is Side.SELL:
            held = order.reserved + self.free.get(order.instrument.base_asset, _ZERO)
            return None if held >= qty else Reject.INSUFFICIENT_BALANCE
        cost = notional + self._fees.fee(Decimal(1), notional, maker=False)
        held = order.reserved + self.free.get(order.instrument.quote_asset, _ZERO)
        return None if held >= cost else Reject.INSUFFICIENT_BALANCE

    def apply_fill(self, order: SimOrder, price: Decimal, qty: Decimal, fee: Decimal) -> None:
        """Move balances for one fill of order (its filled quantity not yet increased)."""
        inst = order.instrument
        base, quote = inst.base_asset, inst.quote_asset
        lock_asset, new_lock = self._lock_amount(order, order.remaining - qty)
        released = order.reserved - new_lock if order.reserved > 0 else _ZERO
        if released:
            self.locked[lock_asset] -= released
            self.free[lock_asset] = self.free.get(lock_asset, _ZERO) + released
            order.reserved = new_lock
        if order.side is Side.BUY:
            self.free[quote] = self.free.get(quote, _ZERO) - price * qty - fee
            self.free[base] = self.free.get(base, _ZERO) + qty
        else:
            self.free[base] = self.free.get(base, _ZERO) - qty
            self.free[quote] = self.free.get(quote, _ZERO) + price * qty - fee

    def release(self, order: SimOrder) -> None:
        """Unlock whatever order still holds (it was canceled, expired or completed)."""
        if order.reserved > 0:
            asset, _ = self._lock_amount(order, order.remaining)
            self.locked[asset] -= order.reserved
            self.free[asset] = self.free.get(asset, _ZERO) + order.reserved
            order.reserved = _ZERO

    def reducible(self, symbol: str, side: Side) -> Decimal | None:
        """Spot has no positions to reduce: no limit from reduce_only."""
        return None

    def balances(self) -> dict[str, Balance]:
        assets = sorted(set(self.free) | set(self.locked))
        return {a: Balance(a, self.free.get(a, _ZERO), self.locked.get(a, _ZERO)) for a in assets}

    def positions(self) -> dict[str, VenuePosition]:
        return {}


@dataclass(slots=True)
class _Position:
    qty: Decimal = _ZERO  # signed: > 0 long
    entry_price: Decimal = _ZERO


class FuturesAccount:
    """One-way-mode USDⓈ-M account: a wallet in the margin asset, signed positions, cross margin.

    Initial margin is notional / leverage (positions at entry price, resting orders at their
    limit price, only for the part that would increase the position). Available balance is
    wallet + unrealised PnL (at mark) - position margin - order margin. Conditional orders hold
    no margin until they trigger (Binance algo orders). Liquidation is not simulated.
    """

    def __init__(self, wallet: Decimal, asset: str, leverage: int, fees: FeeSchedule) -> None:
        if leverage < 1:
            raise ValueError(f"leverage must be >= 1: {leverage}")
        self.wallet = Decimal(wallet)
        self.asset = asset
        self.leverage = Decimal(leverage)
        self.positions_by_symbol: dict[str, _Position] = {}
        self._reserving: dict[str, SimOrder] = {}  # venue order id -> order holding margin
        self._fees = fees

    def position_qty(self, symbol: str) -> Decimal:
        pos = self.positions_by_symbol.get(symbol)
        return pos.qty if pos else _ZERO

    def available(self, marks: Mapping[str, Decimal]) -> Decimal:
        """Return wallet + unrealised PnL - position margin - order margin."""
        upnl = margin = _ZERO
        for symbol, pos in self.positions_by_symbol.items():
            mark = marks.get(symbol, pos.entry_price)
            upnl += (mark - pos.entry_price) * pos.qty
            margin += abs(pos.qty) * pos.entry_price / self.leverage
        order_margin = sum((o.reserved for o in self._reserving.values()), _ZERO)
        return self.wallet + upnl - margin - order_margin

    def _increasing(self, symbol: str, side: Side, qty: Decimal) -> Decimal:
        """Return the part of qty on side that would open or grow the position."""
        pos = self.position_qty(symbol)
        opposite = pos < 0 if side is Side.BUY else pos > 0
        return max(_ZERO, qty - abs(pos)) if opposite else qty

    def reducible(self, symbol: str, side: Side) -> Decimal | None:
        """Return how much an order on side can reduce the position (0 when it cannot)."""
        pos = self.position_qty(symbol)
        if (side is Side.BUY and pos < 0) or (side is Side.SELL and pos > 0):
            return abs(pos)
        return _ZERO

    def reserve(
        self, order: SimOrder, marks: Mapping[str, Decimal], at_trigger: bool = False
    ) -> Reject | None:
        """Hold initial margin for a resting order; check reduce-only; return a reason if refused."""
        intent = order.intent
        if not order.triggered:
            return None  # algo orders: no margin or reduce-only check until they trigger
        if intent.reduce_only:
            return None if self.reducible(order.symbol, order.side) else Reject.REDUCE_ONLY_REJECTED
        price = intent.price
        if price is None:
            return None  # market-type orders: checked when they execute
        need = self._increasing(order.symbol, order.side, order.remaining) * price / self.leverage
        if need > self.available(marks):
            return Reject.INSUFFICIENT_BALANCE
        order.reserved = need
        self._reserving[order.venue_order_id] = order
        return None

    def check_taker(
        self, order: SimOrder, qty: Decimal, notional: Decimal, marks: Mapping[str, Decimal]
    ) -> Reject | None:
        """Return a reason when the margin for a taker execution of qty is not available."""
        if order.intent.reduce_only or qty <= 0:
            return None
        increase = self._increasing(order.symbol, order.side, qty)
        need = notional / qty * increase / self.leverage
        fee = self._fees.fee(Decimal(1), notional, maker=False)
        return (
            None
            if need + fee <= self.available(marks) + order.reserved
            else Reject.INSUFFICIENT_BALANCE
        )

    def apply_fill(self, order: SimOrder, price: Decimal, qty: Decimal, fee: Decimal) -> None:
        """Fold one fill into the position and wallet (realised PnL, fee)."""
        pos = self.positions_by_symbol.setdefault(order.symbol, _Position())
        signed = qty if order.side is Side.BUY else -qty
        if pos.qty == 0 or (pos.qty > 0) == (signed > 0):
            new_qty = pos.qty + signed
            pos.entry_price = (pos.entry_price * abs(pos.qty) + price * qty) / abs(new_qty)
            pos.qty = new_qty
        else:
            closed = min(qty, abs(pos.qty))
            direction = 1 if pos.qty > 0 else -1
            self.wallet += (price - pos.entry_price) * closed * direction
            pos.qty += signed
            if pos.qty == 0:
                pos.entry_price = _ZERO
            elif (pos.qty > 0) != (direction > 0):  # flipped: the rest opens at the fill price
                pos.entry_price = price
        if pos.qty == 0:
            del self.positions_by_symbol[order.symbol]
        self.wallet -= fee
        remaining_before = order.remaining
        if order.reserved > 0 and remaining_before > 0:
            order.reserved = order.reserved * (remaining_before - qty) / remaining_before

    def release(self, order: SimOrder) -> None:
        """Stop holding margin for order."""
        self._reserving.pop(order.venue_order_id, None)
        order.reserved = _ZERO

    def apply_funding(self, amount: Decimal) -> None:
        self.wallet += amount

    def balances(self) -> dict[str, Balance]:
        """Margin asset only: free = wallet - initial margins, locked = initial margins."""
        margin = sum(
            (abs(p.qty) * p.entry_price / self.leverage for p in self.positions_by_symbol.values()),
            _ZERO,
        )
        margin += sum((o.reserved for o in self._reserving.values()), _ZERO)
        return {self.asset: Balance(self.asset, self.wallet - margin, margin)}

    def positions(self) -> dict[str, VenuePosition]:
        return {
            s: VenuePosition(s, p.qty, p.entry_price)
            for s, p in sorted(self.positions_by_symbol.items())
        }


Account = SpotAccount | FuturesAccount


def open_account(
    config: SimulatedVenueConfig, balances: Mapping[str, Decimal], fees: FeeSchedule
) -> Account:
    """Return the venue's account: a USDⓈ-M wallet in the margin asset, or spot balances."""
    if config.market is Market.USDM:
        wallet = Decimal(balances.get(config.margin_asset, _ZERO))
        return FuturesAccount(wallet, config.margin_asset, config.leverage, fees)
    return SpotAccount(balances, fees)


def settle_funding(account: Account, state: SymbolState) -> list[OrderEvent]:
    """Settle the funding due on state's symbol at its next funding time (futures positions)."""
    funding_ms = state.next_funding_ms
    assert funding_ms is not None
    state.next_funding_ms = None
    state.last_funding_ms = funding_ms
    if not isinstance(account, FuturesAccount) or state.funding_rate is None:
        return []
    qty = account.position_qty(state.instrument.symbol)
    mark = state.mark_price if state.mark_price is not None else state.last_price
    if qty == 0 or mark is None:
        return []
    amount = (-qty * mark * state.funding_rate).quantize(FEE_QUANTUM)  # longs pay positive rates
    account.apply_funding(amount)
    return [
        FundingPaid(state.instrument.symbol, amount, state.funding_rate, account.asset, funding_ms)
    ]
