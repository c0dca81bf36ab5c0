"""The simulated venue behind the `ExecutionVenue` protocol (paper trading and backtests).

A thin shell: market events go in through `on_market_event` (called by whoever owns the market
data path, in the order events are applied), commands go in through the async protocol methods,
and every event the core produces is handed to the sink at once. Commands are stamped with the
latest exchange time the venue has seen, never with the wall clock, so a live paper session and a
replay of its tape produce the same order events.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from engine.events import DepthDiff, DepthSnapshot, MarkPriceUpdated, TradePrinted
from engine.orders import OrderEvent, OrderIntent
from exchange.base import Balance, OpenOrder, OrderEventSink, VenuePosition
from exchange.simulated import BookView, SimulatedVenue

BookLookup = Callable[[str], BookView | None]


class SimulatedExecutionVenue:
    """ExecutionVenue over a SimulatedVenue; book_of returns the current book of a symbol."""

    def __init__(self, core: SimulatedVenue, book_of: BookLookup | None = None) -> None:
        self.core = core
        self._book_of = book_of
        self._sink: OrderEventSink | None = None
        self._undelivered: list[OrderEvent] = []

    def set_event_sink(self, sink: OrderEventSink) -> None:
        """Deliver every order event to sink (events produced before this are delivered now)."""
        self._sink = sink
        pending, self._undelivered = self._undelivered, []
        self._deliver(pending)

    def _deliver(self, events: list[OrderEvent]) -> None:
        if self._sink is None:
            self._undelivered.extend(events)
            return
        for event in events:
            self._sink(event)

    async def submit(self, intent: OrderIntent) -> None:
        """Send intent at the venue's current exchange time."""
        self._deliver(self.core.submit(intent, self.core.now_ms))

    async def submit_list(self, list_client_order_id: str, legs: Sequence[OrderIntent]) -> None:
        """Send a spot OCO order list at the venue's current exchange time."""
        self._deliver(self.core.submit_list(list_client_order_id, legs, self.core.now_ms))

    async def cancel(self, symbol: str, client_order_id: str) -> None:
        """Ask to cancel at the venue's current exchange time."""
        self._deliver(self.core.cancel(symbol, client_order_id, self.core.now_ms))

    async def open_orders(self, symbol: str | None = None) -> list[OpenOrder]:
        return self.core.open_orders(symbol)

    async def balances(self) -> dict[str, Balance]:
        return self.core.balances()

    async def positions(self) -> dict[str, VenuePosition]:
        return self.core.positions()

    def on_market_event(self, event: object) -> None:
        """Feed one market event (after the book has applied it) to the matching core."""
        core = self.core
        if isinstance(event, TradePrinted):
            events = core.on_trade(event)
        elif isinstance(event, MarkPriceUpdated):
            events = core.on_mark_price(event)
        elif isinstance(event, (DepthDiff, DepthSnapshot)):
            book = self._book_of(event.symbol) if self._book_of is not None else None
            if book is None:
                return
            ts_ms = event.ts_event_ms if event.ts_event_ms is not None else core.now_ms
            events = core.on_book(event.symbol, book, ts_ms)
        else:
            return
        self._deliver(events)

    def advance(self, now_ms: int) -> None:
        """Process commands due by now_ms without a market event (end of a replay)."""
        self._deliver(self.core.advance(now_ms))
