"""Read-only views the trading loop hands out: to the strategy, the risk gate and the halt.

They sit on the path from a closing row to an order, so each is built once per decision and
only what is read is computed: feature vectors of a symbol are assembled when the strategy asks
for that symbol (a context for 20 symbols used to build all 20 on every event).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any, Protocol

from engine.model import Side
from portfolio.portfolio import Portfolio
from risk.checks import PositionView as RiskPosition
from risk.halt import OpenOrderView
from risk.ids import parse_client_order_id
from strategy.signals import FeatureVector, PositionSide, PositionView


class _Opened(Protocol):
    side: PositionSide
    entry_ts_ms: int


class _Orders(Protocol):
    def open_orders(self, symbol: str | None = None) -> list[Any]: ...

    def order_list_of(self, symbol: str, client_order_id: str) -> tuple[str, str] | None: ...


class LazyFeatures(Mapping[str, Mapping[str, FeatureVector]]):
    """symbol -> its latest feature vectors, assembled on first read and kept for this view."""

    __slots__ = ("_built", "_symbols", "_vectors")

    def __init__(
        self, symbols: Mapping[str, object], vectors: Callable[[str], Mapping[str, FeatureVector]]
    ) -> None:
        self._symbols = symbols
        self._vectors = vectors
        self._built: dict[str, Mapping[str, FeatureVector]] = {}

    def __getitem__(self, symbol: str) -> Mapping[str, FeatureVector]:
        built = self._built.get(symbol)
        if built is None:
            if symbol not in self._symbols:
                raise KeyError(symbol)
            built = self._built[symbol] = self._vectors(symbol)
        return built

    def __iter__(self) -> Iterator[str]:
        return iter(self._symbols)

    def __len__(self) -> int:
        return len(self._symbols)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._symbols


class BookValidity(Mapping[str, bool]):
    """symbol -> whether its book is in sync, read live from the market data (no copy per event)."""

    __slots__ = ("_market_data",)

    def __init__(self, market_data: Mapping[str, Any]) -> None:
        self._market_data = market_data

    def __getitem__(self, symbol: str) -> bool:
        return bool(self._market_data[symbol].book_valid)

    def __iter__(self) -> Iterator[str]:
        return iter(self._market_data)

    def __len__(self) -> int:
        return len(self._market_data)


def position_views(
    opened: Mapping[str, _Opened], portfolio: Portfolio, last_price: Mapping[str, Decimal]
) -> dict[str, PositionView]:
    """Return the strategy's view of each open position, marked at the last price."""
    views = {}
    for symbol, entry in opened.items():
        position = portfolio.positions[symbol]
        mark = last_price.get(symbol, position.avg_price)
        pnl_pct = (
            float((mark / position.avg_price - 1) * 100) * entry.side.sign
            if position.avg_price
            else 0.0
        )
        views[symbol] = PositionView(entry.side, abs(position.qty), position.avg_price,
                                     entry.entry_ts_ms, pnl_pct)  # fmt: skip
    return views


def risk_positions(portfolio: Portfolio) -> tuple[RiskPosition, ...]:
    """Return the open positions as the risk gate sees them."""
    return tuple(
        RiskPosition(s, Side.BUY if p.qty > 0 else Side.SELL, abs(p.qty), p.avg_price)
        for s, p in portfolio.open_positions().items()
    )


def open_order_views(venue: _Orders) -> list[OpenOrderView]:
    """Return our open orders as the halt sees them: one leg per OCO list (one cancel ends it)."""
    views: list[OpenOrderView] = []
    listed: set[str] = set()
    for order in venue.open_orders():
        if order.client_order_id in listed:
            continue
        pair = venue.order_list_of(order.symbol, order.client_order_id)
        if pair is not None:
            listed.add(pair[1])
        parsed = parse_client_order_id(order.client_order_id)
        role = order.intent.role if order.intent else parsed.role if parsed else None
        if role is not None:  # an order we did not place is not ours to cancel
            views.append(OpenOrderView(order.symbol, order.client_order_id, role))
    return views
