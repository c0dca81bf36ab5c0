"""The read-only view a strategy decides on: rings, features, scores, positions, market context.

The composition root builds one `StrategyContext` per event (a handful of references, cheap) and
passes it with the event to `on_event`. Nothing in it is a live connection: rings are the
fold's `ColumnRing`s (read through `window` / `last`, which return read-only views), the rest
are frozen values or mappings the strategy must not mutate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Protocol

import numpy as np

from engine.events import MarkPriceUpdated
from strategy.signals.events import ScoreUpdated
from strategy.signals.requests import PositionSide


class WindowSource(Protocol):
    """The read side of engine.ring.ColumnRing that strategies use."""

    def window(self, column: str, n: int | None = None) -> np.ndarray: ...

    def last(self, column: str) -> Any: ...

    def __len__(self) -> int: ...


@dataclass(frozen=True, slots=True)
class PositionView:
    """One open position as the portfolio sees it."""

    side: PositionSide
    quantity: Decimal
    entry_price: Decimal
    entry_ts_ms: int
    unrealised_pnl_pct: float  # in percent of the entry notional, signed (> 0 = winning)


@dataclass(frozen=True, slots=True)
class FeatureVector:
    """The latest vector of one feature set (`columns` order) and the row or candle it is for."""

    columns: tuple[str, ...]
    values: np.ndarray
    ts_ms: int

    def get(self, column: str) -> float:
        """Return one feature by name; KeyError when the set has no such column."""
        return float(self.values[self.columns.index(column)])


@dataclass(frozen=True, slots=True)
class FundingSnapshot:
    """The latest futures funding rate of a symbol, from its markPrice stream."""

    rate: float  # per funding interval, as a fraction (0.0001 = 0.01 %); > 0: longs pay shorts
    mark_price: float
    next_funding_ms: int
    ts_ms: int

    @classmethod
    def from_mark_price(cls, event: MarkPriceUpdated) -> FundingSnapshot:
        """Take the funding part of a markPrice event."""
        return cls(event.funding_rate, event.mark_price, event.next_funding_ms, event.ts_event_ms)


@dataclass(frozen=True, slots=True)
class MarketContext:
    """Per-symbol inputs of the market-context filters; None where nothing is known."""

    funding: FundingSnapshot | None = None
    spot_price: float | None = None
    futures_price: float | None = None
    prices_ts_ms: int | None = None  # exchange time of the older of the two prices


@dataclass(frozen=True, slots=True)
class Sentiment:
    """External sentiment inputs; None where the source is unknown or unreachable (= neutral)."""

    fear_greed: float | None = None  # 0 (extreme fear) .. 100 (extreme greed)
    btc_dominance_pct: float | None = None  # BTC share of total crypto market cap, percent
    ts_ms: int | None = None  # when it was fetched (clock time of the fetcher)


def _empty() -> Mapping[Any, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class StrategyContext:
    """Everything a strategy may read while it handles one event."""

    now_ms: int  # exchange time of the event being handled
    equity: Decimal  # account equity in the quote asset
    rows: Mapping[str, WindowSource] = field(default_factory=_empty)  # per-second rows by symbol
    candles: Mapping[str, WindowSource] = field(default_factory=_empty)  # one-minute candles
    features: Mapping[str, Mapping[str, FeatureVector]] = field(default_factory=_empty)
    scores: Mapping[str, ScoreUpdated] = field(default_factory=_empty)  # latest model score
    positions: Mapping[str, PositionView] = field(default_factory=_empty)  # open positions only
    book_valid: Mapping[str, bool] = field(default_factory=_empty)  # missing = no book = valid
    market: Mapping[str, MarketContext] = field(default_factory=_empty)
    sentiment: Sentiment = Sentiment()

    def position(self, symbol: str) -> PositionView | None:
        return self.positions.get(symbol)

    def is_book_valid(self, symbol: str) -> bool:
        """False only when the engine knows the symbol's book is out of sync."""
        return self.book_valid.get(symbol, True)

    def market_context(self, symbol: str) -> MarketContext:
        return self.market.get(symbol) or MarketContext()

    def last_price(self, symbol: str) -> float | None:
        """Return the freshest close: the last per-second row, else the last candle."""
        for rings in (self.rows, self.candles):
            ring = rings.get(symbol)
            if ring is not None and len(ring):
                price = float(ring.last("close"))
                if np.isfinite(price) and price > 0:
                    return price
        return None
