"""Positions as a pure fold of fills and funding; round trips (closed trades) fall out of it.

A position is signed (qty > 0 long, < 0 short) with its average entry price. A fill that reduces
it realises (fill price - average price) * closed qty * direction; a fill that crosses zero closes
the round trip and opens a new one at the fill price with the rest. Money is in the symbol's quote
asset (USDⓈ-M: the margin asset); fees charged in another asset are converted by the caller.

Round trip: from the fill that opens a position (qty leaves 0) to the fill that brings it back to
0 (or through it). Its pnl is net: realised PnL - fees + funding accrued while it was open.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal

from engine.model import Side
from engine.orders import FundingPaid, OrderFilled

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    """One round trip, flat to flat."""

    symbol: str
    direction: Side  # BUY: a long round trip, SELL: a short one
    opened_ms: int
    closed_ms: int
    quantity: Decimal  # total quantity entered
    entry_price: Decimal  # average entry price
    exit_price: Decimal  # average exit price
    pnl: Decimal  # net: realised - fees + funding
    fees: Decimal
    funding: Decimal

    @property
    def return_pct(self) -> float:
        """Return net pnl as a percentage of the entry notional."""
        notional = self.quantity * self.entry_price
        return float(self.pnl / notional * 100) if notional else 0.0


@dataclass(frozen=True, slots=True)
class _RoundTrip:
    opened_ms: int
    direction: Side
    entry_qty: Decimal = _ZERO
    entry_notional: Decimal = _ZERO
    exit_qty: Decimal = _ZERO
    exit_notional: Decimal = _ZERO
    realized: Decimal = _ZERO
    fees: Decimal = _ZERO
    funding: Decimal = _ZERO

    def closed(self, symbol: str, closed_ms: int) -> ClosedTrade:
        return ClosedTrade(
            symbol=symbol,
            direction=self.direction,
            opened_ms=self.opened_ms,
            closed_ms=closed_ms,
            quantity=self.entry_qty,
            entry_price=self.entry_notional / self.entry_qty,
            exit_price=self.exit_notional / self.exit_qty if self.exit_qty else _ZERO,
            pnl=self.realized - self.fees + self.funding,
            fees=self.fees,
            funding=self.funding,
        )


@dataclass(frozen=True, slots=True)
class Position:
    """A symbol's position and its lifetime totals; immutable: apply_* return a new one."""

    symbol: str
    qty: Decimal = _ZERO
    avg_price: Decimal = _ZERO
    realized_pnl: Decimal = _ZERO  # gross of fees, lifetime
    fees: Decimal = _ZERO  # lifetime, quote asset
    funding: Decimal = _ZERO  # lifetime: > 0 received
    trip: _RoundTrip | None = None

    @property
    def is_flat(self) -> bool:
        return self.qty == 0

    def unrealized_pnl(self, mark: Decimal) -> Decimal:
        """Return (mark - average price) * signed qty."""
        return (mark - self.avg_price) * self.qty

    def apply_fill(
        self, fill: OrderFilled, fee_in_quote: Decimal | None = None
    ) -> tuple[Position, ClosedTrade | None]:
        """Fold one fill; return the new position and the round trip it closed, if any.

        fee_in_quote: the fill's fee in the quote asset (default: fill.fee as it is).
        """
        fee = fill.fee if fee_in_quote is None else fee_in_quote
        signed = fill.quantity if fill.side is Side.BUY else -fill.quantity
        price = fill.price
        if self.qty == 0 or (self.qty > 0) == (signed > 0):
            new_qty = self.qty + signed
            avg = (self.avg_price * abs(self.qty) + price * fill.quantity) / abs(new_qty)
            trip = self.trip or _RoundTrip(fill.ts_event_ms, fill.side)
            trip = replace(
                trip,
                entry_qty=trip.entry_qty + fill.quantity,
                entry_notional=trip.entry_notional + price * fill.quantity,
                fees=trip.fees + fee,
            )
            return replace(self, qty=new_qty, avg_price=avg, fees=self.fees + fee, trip=trip), None
        closed_qty = min(fill.quantity, abs(self.qty))
        direction = 1 if self.qty > 0 else -1
        realized = (price - self.avg_price) * closed_qty * direction
        closing_fee = fee * closed_qty / fill.quantity
        assert self.trip is not None
        trip = replace(
            self.trip,
            exit_qty=self.trip.exit_qty + closed_qty,
            exit_notional=self.trip.exit_notional + price * closed_qty,
            realized=self.trip.realized + realized,
            fees=self.trip.fees + closing_fee,
        )
        new_qty = self.qty + signed
        base = replace(self, realized_pnl=self.realized_pnl + realized, fees=self.fees + fee)
        if new_qty != 0 and (new_qty > 0) == (self.qty > 0):
            return replace(base, qty=new_qty, trip=trip), None
        closed = trip.closed(self.symbol, fill.ts_event_ms)
        if new_qty == 0:
            return replace(base, qty=_ZERO, avg_price=_ZERO, trip=None), closed
        opened = abs(new_qty)  # flipped: the rest opens a new round trip at the fill price
        new_trip = _RoundTrip(
            fill.ts_event_ms,
            fill.side,
            entry_qty=opened,
            entry_notional=price * opened,
            fees=fee - closing_fee,
        )
        return replace(base, qty=new_qty, avg_price=price, trip=new_trip), closed

    def apply_funding(self, funding: FundingPaid) -> Position:
        """Fold one funding settlement (it belongs to the open round trip)."""
        trip = self.trip
        if trip is not None:
            trip = replace(trip, funding=trip.funding + funding.amount)
        return replace(self, funding=self.funding + funding.amount, trip=trip)


def fold_positions(
    events: Iterable[OrderFilled | FundingPaid],
) -> tuple[dict[str, Position], list[ClosedTrade]]:
    """Fold fills and funding (in the order given) into positions and closed round trips."""
    positions: dict[str, Position] = {}
    closed: list[ClosedTrade] = []
    for event in events:
        pos = positions.get(event.symbol) or Position(event.symbol)
        if isinstance(event, FundingPaid):
            positions[event.symbol] = pos.apply_funding(event)
            continue
        positions[event.symbol], trade = pos.apply_fill(event)
        if trade is not None:
            closed.append(trade)
    return positions, closed
