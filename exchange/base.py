"""The two edges that change between modes: where market data comes from, where orders go.

`MarketData` pushes raw frames into the shared pipeline (live sockets or a recorded tape) and
fetches a depth snapshot when the book sync asks for one. `ExecutionVenue` takes orders and
reports what happened to them as `OrderEvent`s through one sink callback, so the simulated venue
(paper, backtest) and the Binance venue (live, testnet) are interchangeable behind it. The
snapshot types below are what a venue reports at start-up reconciliation.
"""

from __future__ import annotations

from collections.abc import Sequence

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from engine.model import Side
from engine.orders import OrderEvent, OrderIntent, OrderStatus

OrderEventSink = Callable[[OrderEvent], None]
"""Receives every order event of a venue, in the order the venue produced them."""


@dataclass(frozen=True, slots=True)
class Balance:
    """One asset of the account as the venue reports it (futures: the margin asset's wallet)."""

    asset: str
    free: Decimal
    locked: Decimal

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


@dataclass(frozen=True, slots=True)
class OpenOrder:
    """An order resting (or untriggered) on the venue."""

    symbol: str
    client_order_id: str
    venue_order_id: str
    side: Side
    quantity: Decimal
    filled_quantity: Decimal
    status: OrderStatus
    intent: OrderIntent | None = None  # the venue may not know the full intent (live venue)


@dataclass(frozen=True, slots=True)
class VenuePosition:
    """A futures position in one-way mode: qty > 0 long, < 0 short."""

    symbol: str
    qty: Decimal
    entry_price: Decimal


class MarketData(Protocol):
    """A source of raw market frames: live websockets or a recorded tape."""

    def request_snapshot(self, symbol: str) -> None:
        """Ask for a depth snapshot of symbol (the book sync lost or has not found its place)."""
        ...

    async def run(self) -> None:
        """Deliver frames to the pipeline until closed or exhausted."""
        ...

    async def close(self) -> None:
        """Stop delivering frames and release connections."""
        ...


class ExecutionVenue(Protocol):
    """Where orders go; every outcome arrives later as an OrderEvent through the sink."""

    def set_event_sink(self, sink: OrderEventSink) -> None:
        """Deliver every subsequent order event to sink."""
        ...

    async def submit(self, intent: OrderIntent) -> None:
        """Send an order (journal the intent first); the outcome arrives as events."""
        ...

    async def submit_list(self, list_client_order_id: str, legs: Sequence[OrderIntent]) -> None:
        """Send an OCO order list (spot `orderList/oco`): one quantity locked once, one leg cancels the other."""
        ...

    async def cancel(self, symbol: str, client_order_id: str) -> None:
        """Ask to cancel an open order; OrderCanceled arrives if it was still open."""
        ...

    async def open_orders(self, symbol: str | None = None) -> list[OpenOrder]:
        """Return the venue's open orders (all symbols when symbol is None)."""
        ...

    async def balances(self) -> dict[str, Balance]:
        """Return the venue's balances by asset."""
        ...

    async def positions(self) -> dict[str, VenuePosition]:
        """Return the venue's non-zero futures positions by symbol (empty on spot)."""
        ...
