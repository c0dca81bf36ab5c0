"""Typed, immutable market events (past tense) that flow from the exchange adapters inward.

Every market event carries the exchange's time (`ts_event_ms`, Binance `E`) and our receive
time (`ts_recv_ns`). Prices and quantities are floats as decoded from the wire; the order book
turns prices into integer ticks before it stores them.

Events are frozen msgspec Structs rather than frozen dataclasses: same immutability, typing,
equality and keyword/positional construction, but built ~10x faster (a frozen dataclass pays an
`object.__setattr__` per field), and `gc=False` keeps the hundreds of thousands of events per
second out of the cyclic garbage collector (they hold only scalars and lists of float pairs, so
they can never form a cycle). Use `msgspec.structs.replace` / `asdict` instead of the
`dataclasses` functions.
"""

from __future__ import annotations

import msgspec

Levels = list[tuple[float, float]]  # (price, quantity); quantity 0 deletes the level


class DepthDiff(msgspec.Struct, frozen=True, gc=False):
    """A diff-depth event (`depthUpdate`): absolute quantities for changed levels."""

    symbol: str
    ts_event_ms: int
    ts_recv_ns: int
    first_update_id: int  # U
    final_update_id: int  # u
    prev_final_update_id: int | None  # pu (USDⓈ-M only)
    bids: Levels
    asks: Levels


class DepthSnapshot(msgspec.Struct, frozen=True, gc=False):
    """A REST depth snapshot (`GET /api/v3/depth`, `/fapi/v1/depth`)."""

    symbol: str
    last_update_id: int
    ts_event_ms: int | None  # futures only (E); spot snapshots carry no time
    ts_recv_ns: int
    bids: Levels
    asks: Levels


class TradePrinted(msgspec.Struct, frozen=True, gc=False):
    """A trade (`trade`) or aggregated trade (`aggTrade`, trade_count = l - f + 1)."""

    symbol: str
    ts_event_ms: int  # E
    ts_trade_ms: int  # T: decides the per-second row the trade belongs to
    ts_recv_ns: int
    trade_id: int  # t for trades, last trade id l for aggTrades
    price: float
    qty: float
    buyer_is_maker: bool  # m: True means the aggressor sold
    trade_count: int = 1
    first_trade_id: int = -1  # f for aggTrades, t for trades


class BookTickerUpdated(msgspec.Struct, frozen=True, gc=False):
    symbol: str
    update_id: int
    ts_event_ms: int | None  # spot bookTicker carries no time
    ts_recv_ns: int
    bid: float
    bid_qty: float
    ask: float
    ask_qty: float


class MarkPriceUpdated(msgspec.Struct, frozen=True, gc=False):
    symbol: str
    ts_event_ms: int
    ts_recv_ns: int
    mark_price: float
    index_price: float
    funding_rate: float
    next_funding_ms: int


class ServerShutdownAnnounced(msgspec.Struct, frozen=True, gc=False):
    """Binance announced it will close this connection soon: reconnect now."""

    ts_event_ms: int
    ts_recv_ns: int


class BookInvalidated(msgspec.Struct, frozen=True, gc=False):
    """The local book of a symbol can no longer be trusted (gap, crossed, reconnect)."""

    symbol: str
    reason: str
    ts_event_ms: int
    ts_recv_ns: int


class BookSynced(msgspec.Struct, frozen=True, gc=False):
    """The local book of a symbol was (re)built from a snapshot and is valid again."""

    symbol: str
    last_update_id: int
    ts_recv_ns: int


MarketEvent = (
    DepthDiff
    | DepthSnapshot
    | TradePrinted
    | BookTickerUpdated
    | MarkPriceUpdated
    | ServerShutdownAnnounced
)
