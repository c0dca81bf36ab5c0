"""The pure fold of one Binance order: what the venue reports becomes engine events, once each.

`fold_order` turns a `VenueOrder` (a REST answer, a query, a user-stream report) into the events
not emitted before for that order: OrderAccepted once, every fill once (deduplicated by trade
id), one terminal event. `TrackedOrder` is the state it folds into. No I/O here; the
OrderManager (exchange.binance.order_manager) is the async shell around it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from decimal import Decimal

from engine.orders import (
    OrderAccepted,
    OrderCanceled,
    OrderEvent,
    OrderExpired,
    OrderIntent,
    OrderRejected,
    OrderStatus,
)
from exchange.binance.orders import VenueOrder, fill_event


@dataclass(slots=True)
class TrackedOrder:
    """Our knowledge of one order: what we asked for and which events were already emitted."""

    intent: OrderIntent
    algo: bool
    created_mono_ns: int
    status: OrderStatus = OrderStatus.PENDING
    venue_order_id: str | None = None
    filled_qty: Decimal = Decimal(0)
    trade_ids: set[int] = field(default_factory=set)
    accepted: bool = False
    sends: int = 0  # placements actually sent (a resend happens only after "not placed")


def fold_order(tracked: TrackedOrder, order: VenueOrder) -> list[OrderEvent]:
    """Advance tracked with what the venue reports; return only the events not emitted before."""
    events: list[OrderEvent] = []
    cid, symbol = tracked.intent.client_order_id, tracked.intent.symbol
    if tracked.status in (OrderStatus.REJECTED, OrderStatus.CANCELED, OrderStatus.EXPIRED):
        terminal_done = True
    else:
        terminal_done = tracked.status is OrderStatus.FILLED
    if not tracked.accepted and order.status is not OrderStatus.REJECTED:
        tracked.accepted = True
        tracked.venue_order_id = order.venue_order_id
        events.append(OrderAccepted(symbol, cid, order.venue_order_id, order.ts_ms))
    for fill in order.fills:
        if fill.trade_id in tracked.trade_ids:
            continue
        tracked.trade_ids.add(fill.trade_id)
        tracked.filled_qty += fill.quantity
        # complete: the venue says FILLED, or a trade list ran ahead of a PARTIALLY_FILLED report
        complete = (
            order.status is OrderStatus.FILLED and tracked.filled_qty >= order.executed_qty
        ) or (order.orig_qty > 0 and tracked.filled_qty >= order.orig_qty)
        events.append(fill_event(dataclasses.replace(order, client_order_id=cid), fill, complete))
    if terminal_done:
        return events
    if order.status is OrderStatus.FILLED and tracked.filled_qty >= order.executed_qty:
        tracked.status = OrderStatus.FILLED
    elif order.status is OrderStatus.CANCELED:
        tracked.status = OrderStatus.CANCELED
        events.append(OrderCanceled(symbol, cid, order.ts_ms))
    elif order.status is OrderStatus.EXPIRED:
        tracked.status = OrderStatus.EXPIRED
        events.append(OrderExpired(symbol, cid, order.ts_ms))
    elif order.status is OrderStatus.REJECTED:
        tracked.status = OrderStatus.REJECTED
        events.append(OrderRejected(symbol, cid, "VENUE", "rejected by the venue", order.ts_ms))
    elif order.status is not OrderStatus.FILLED:
        tracked.status = OrderStatus.PARTIALLY_FILLED if tracked.filled_qty > 0 else OrderStatus.NEW
    return events
