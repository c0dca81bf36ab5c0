"""Reconciliation: compare what we believe with what the venue reports; return typed mismatches.

A pure function of two views, run at start-up (before the strategy sees an event) and after
reconnects. Each mismatch type says what the caller must do:
- `OrderMissingOnVenue`: we think it is open, the venue does not list it -> query its final state
  by client order id (it filled or was canceled while we were not listening).
- `UnknownOrderOnVenue`: the venue has an open order we never journaled -> adopt or cancel it.
- `OrderFillMismatch`: both know the order but disagree on its filled quantity -> fetch its trades.
- `PositionMismatch` / `BalanceMismatch`: replace the local figure with the venue's and alert.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class OrderMissingOnVenue:
    symbol: str
    client_order_id: str


@dataclass(frozen=True, slots=True)
class UnknownOrderOnVenue:
    symbol: str
    client_order_id: str


@dataclass(frozen=True, slots=True)
class OrderFillMismatch:
    symbol: str
    client_order_id: str
    local_filled: Decimal
    venue_filled: Decimal


@dataclass(frozen=True, slots=True)
class PositionMismatch:
    symbol: str
    local_qty: Decimal
    venue_qty: Decimal


@dataclass(frozen=True, slots=True)
class BalanceMismatch:
    asset: str
    local: Decimal
    venue: Decimal


Mismatch = (
    OrderMissingOnVenue
    | UnknownOrderOnVenue
    | OrderFillMismatch
    | PositionMismatch
    | BalanceMismatch
)

OpenOrders = Mapping[str, tuple[str, Decimal]]
"""Open orders by client order id: (symbol, filled quantity)."""


def reconcile(
    *,
    local_orders: OpenOrders,
    venue_orders: OpenOrders,
    local_positions: Mapping[str, Decimal],
    venue_positions: Mapping[str, Decimal],
    local_balances: Mapping[str, Decimal],
    venue_balances: Mapping[str, Decimal],
    balance_tolerance: Decimal = _ZERO,
) -> list[Mismatch]:
    """Return every difference between the local and the venue view, in a stable order.

    Missing entries count as zero; balances differing by at most balance_tolerance match (fee
    rounding, dust).
    """
    out: list[Mismatch] = []
    for cid in sorted(local_orders.keys() - venue_orders.keys()):
        out.append(OrderMissingOnVenue(local_orders[cid][0], cid))
    for cid in sorted(venue_orders.keys() - local_orders.keys()):
        out.append(UnknownOrderOnVenue(venue_orders[cid][0], cid))
    for cid in sorted(local_orders.keys() & venue_orders.keys()):
        (symbol, local_filled), (_, venue_filled) = local_orders[cid], venue_orders[cid]
        if local_filled != venue_filled:
            out.append(OrderFillMismatch(symbol, cid, local_filled, venue_filled))
    for symbol in sorted(local_positions.keys() | venue_positions.keys()):
        local, venue = local_positions.get(symbol, _ZERO), venue_positions.get(symbol, _ZERO)
        if local != venue:
            out.append(PositionMismatch(symbol, local, venue))
    for asset in sorted(local_balances.keys() | venue_balances.keys()):
        local, venue = local_balances.get(asset, _ZERO), venue_balances.get(asset, _ZERO)
        if abs(local - venue) > balance_tolerance:
            out.append(BalanceMismatch(asset, local, venue))
    return out
