"""Order state as a pure fold of intents and order events (what we believe is on the venue)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from types import MappingProxyType

from engine.orders import (
    FundingPaid,
    OrderAccepted,
    OrderCanceled,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    OrderStatus,
)

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class OrderState:
    intent: OrderIntent
    status: OrderStatus = OrderStatus.PENDING
    filled: Decimal = _ZERO
    venue_order_id: str | None = None
    reason: str = ""

    @property
    def is_open(self) -> bool:
        return self.status.is_open


def apply_order_event(state: OrderState, event: OrderEvent) -> OrderState:
    """Return the order state after one of its events (terminal states never reopen)."""
    if not state.is_open:
        return state
    if isinstance(event, OrderAccepted):
        status = OrderStatus.PARTIALLY_FILLED if state.filled > 0 else OrderStatus.NEW
        return replace(state, status=status, venue_order_id=event.venue_order_id)
    if isinstance(event, OrderFilled):
        filled = state.filled + event.quantity
        done = event.order_complete or filled >= state.intent.quantity
        return replace(
            state,
            filled=filled,
            status=OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED,
        )
    if isinstance(event, OrderCanceled):
        return replace(state, status=OrderStatus.CANCELED, reason=event.reason)
    if isinstance(event, OrderExpired):
        return replace(state, status=OrderStatus.EXPIRED, reason=event.reason)
    if isinstance(event, OrderRejected):
        return replace(state, status=OrderStatus.REJECTED, reason=event.reason)
    return state


class OrderTracker:
    """Every order's state by client order id; fills are counted once per (symbol, trade_id)."""

    def __init__(self) -> None:
        self._orders: dict[str, OrderState] = {}
        self._seen_fills: set[tuple[str, int]] = set()

    def submitted(self, intent: OrderIntent) -> None:
        """Track intent as PENDING (call when it is journaled, before it is sent)."""
        self._orders[intent.client_order_id] = OrderState(intent)

    def apply(self, event: OrderEvent) -> OrderState | None:
        """Fold an order event into its order's state; return the new state (None: not ours)."""
        if isinstance(event, FundingPaid):
            return None
        state = self._orders.get(event.client_order_id)
        if state is None:
            return None
        if isinstance(event, OrderFilled):
            key = (event.symbol, event.trade_id)
            if key in self._seen_fills:
                return state
            self._seen_fills.add(key)
        new = apply_order_event(state, event)
        self._orders[event.client_order_id] = new
        return new

    def get(self, client_order_id: str) -> OrderState | None:
        return self._orders.get(client_order_id)

    def open_orders(self) -> Mapping[str, OrderState]:
        """Return the orders still open (or of unknown outcome), by client order id."""
        return MappingProxyType({c: s for c, s in self._orders.items() if s.is_open})
