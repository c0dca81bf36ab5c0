"""Spot OCO order lists in the simulated venue: Binance's validation rules, as pure functions.

An OCO (`POST /api/v3/orderList/oco`) is two orders on one symbol, side and quantity: one rests
above the last price, one below. For a SELL the leg above takes profit (TAKE_PROFIT[_LIMIT] or a
LIMIT_MAKER, here a LIMIT leg) and the leg below is the stop (STOP_LOSS[_LIMIT]); a BUY mirrors
it (stop above, take-profit below). Binance checks "SELL: limit price > last price > stop price;
BUY: limit price < last price < stop price" and refuses anything else with -2010 "The
relationship of the prices for the orders is not correct." (strictly: a leg at the last price
would trigger at once). The quantity is locked once for both legs; when one leg triggers or
fills the other expires, and cancelling either cancels the list. USDⓈ-M has no order lists.

`exchange/simulated.py` applies the list to its book of orders; what is decided here is whether
a list is valid and which leg holds the shared lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from engine.model import Instrument, Market, Side
from engine.orders import OrderIntent, OrderType
from exchange.simulated_orders import Reject, SimOrder

STOP_LEGS = frozenset({OrderType.STOP_MARKET, OrderType.STOP_LIMIT})
PROFIT_LEGS = frozenset(
    {OrderType.TAKE_PROFIT_MARKET, OrderType.TAKE_PROFIT_LIMIT, OrderType.LIMIT}
)
PRICES_MESSAGE = "The relationship of the prices for the orders is not correct."


def leg_price(intent: OrderIntent) -> Decimal:
    """Return the price a leg is judged by: its limit price (LIMIT) else its trigger price."""
    price = intent.price if intent.type is OrderType.LIMIT else intent.stop_price
    assert price is not None  # OrderIntent guarantees it for these types
    return price


def oco_failure(
    legs: Sequence[OrderIntent],
    market: Market,
    last_price: Decimal | None,
    best_bid: Decimal | None = None,
    best_ask: Decimal | None = None,
) -> tuple[Reject, str] | None:
    """Return (reason, message) when Binance would refuse this OCO list, else None.

    Without a last price (nothing traded yet) only the legs' order against each other is
    checked; a LIMIT leg must not be marketable against the book (it is a LIMIT_MAKER).
    """
    if market is not Market.SPOT:
        return Reject.OCO_INVALID, "order lists are spot only (USDⓈ-M has no OCO)"
    if len(legs) != 2:
        return Reject.OCO_INVALID, f"an OCO list has two orders, not {len(legs)}"
    first, second = legs
    if (first.symbol, first.side) != (second.symbol, second.side):
        return Reject.OCO_INVALID, "OCO legs must share symbol and side"
    if first.quantity != second.quantity:
        return (
            Reject.OCO_INVALID,
            f"OCO legs differ in quantity: {first.quantity} vs {second.quantity}",
        )
    stops = [leg for leg in legs if leg.type in STOP_LEGS]
    profits = [leg for leg in legs if leg.type in PROFIT_LEGS]
    if len(stops) != 1 or len(profits) != 1:
        kinds = ", ".join(leg.type.value for leg in legs)
        return (
            Reject.OCO_INVALID,
            f"an OCO needs one stop leg and one take-profit/limit leg: {kinds}",
        )
    stop, profit = stops[0], profits[0]
    if first.side is Side.SELL:
        above, below = leg_price(profit), leg_price(stop)
    else:
        above, below = leg_price(stop), leg_price(profit)
    if not above > below or (last_price is not None and not above > last_price > below):
        return Reject.OCO_PRICES, PRICES_MESSAGE
    if profit.type is OrderType.LIMIT:
        limit = leg_price(profit)
        takes = (
            best_bid is not None and limit <= best_bid
            if profit.side is Side.SELL
            else best_ask is not None and limit >= best_ask
        )
        if takes:
            return Reject.POST_ONLY_WOULD_TAKE, "Order would immediately match and take."
    return None


def lock_holder(orders: Sequence[SimOrder]) -> SimOrder:
    """Return the leg whose lock covers the whole list (locked once, for the larger need).

    SELL legs lock the same base quantity; BUY legs lock quote only for a limit price, so the
    leg with the highest limit price needs the most.
    """
    if orders[0].side is Side.SELL:
        return orders[0]
    return max(orders, key=lambda o: o.intent.price or Decimal(0))


def make_legs(
    legs: Sequence[OrderIntent],
    instrument: Instrument,
    first_order_id: int,
    first_seq: int,
    list_id: str,
) -> list[SimOrder]:
    """Return the venue orders of a valid OCO's legs, linked to each other.

    A conditional leg waits for its trigger; a LIMIT leg (LIMIT_MAKER) rests at once.
    """
    orders = [
        SimOrder(
            leg,
            instrument,
            str(first_order_id + i),
            first_seq + i,
            triggered=leg.type is OrderType.LIMIT,
            working_price=leg.price if leg.type is OrderType.LIMIT else None,
            list_id=list_id,
        )
        for i, leg in enumerate(legs)
    ]
    orders[0].oco_sibling, orders[1].oco_sibling = orders[1], orders[0]
    return orders
