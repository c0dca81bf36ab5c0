"""Feed the matching core from the simulator's replay: trades and mark prices as they are emitted,
the book after each diff.

Trades reach the desk through a tap registered like a websocket subscriber of the recorded trade
(or aggTrade) stream, so they arrive in replay order, interleaved with the depth callbacks the
server offers. The tap is never stalled by faults; duplicated frames (the ``duplicate`` fault) are
dropped by trade id, since the exchange's matching engine saw each trade once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson

from engine.events import MarkPriceUpdated, TradePrinted
from engine.model import Market
from exchange.sim.book import SimBook

if TYPE_CHECKING:
    from exchange.sim.server import SimServer

TradeHandler = Callable[[TradePrinted], None]
MarkHandler = Callable[[MarkPriceUpdated], None]
BookHandler = Callable[[str, "SimBookView", int], None]


class SimBookView:
    """The simulator's own book of one symbol as the venue's BookView (floats, best first)."""

    def __init__(self, book: SimBook) -> None:
        self._book = book
        self._cache: dict[tuple[str, int | None], list[tuple[float, float]]] = {}
        self._cache_version: tuple[int, int | None] = (-1, None)

    def levels(self, side: str, n: int | None = None) -> list[tuple[float, float]]:
        version = (self._book.diffs_applied, self._book.served_update_id)
        if version != self._cache_version:
            self._cache.clear()
            self._cache_version = version
        key = (side, n)
        cached = self._cache.get(key)
        if cached is None:
            _, bids, asks = self._book.depth(n)
            cached = [(float(p), float(q)) for p, q in (bids if side == "bid" else asks)]
            self._cache[key] = cached
        return cached

    def best_bid(self) -> float:
        levels = self.levels("bid", 1)
        return levels[0][0] if levels else math.nan

    def best_ask(self) -> float:
        levels = self.levels("ask", 1)
        return levels[0][0] if levels else math.nan


class ReplayTap:
    """A subscriber of one market's trade and markPrice streams on the replay (never a socket)."""

    combined = False
    closed = False

    def __init__(
        self, sim: SimServer, market: Market, on_trade: TradeHandler, on_mark: MarkHandler
    ):
        self.conn_id = -1
        self._sim = sim
        self._market = market
        self._on_trade, self._on_mark = on_trade, on_mark
        self._last_trade_id: dict[str, int] = {}
        self._loops = 0
        streams = {s for m, s in sim.timeline.streams if m is market}
        symbols = {s.partition("@")[0] for s in streams}
        self.subs: dict[str, tuple[Market, str] | None] = {}
        for lower in sorted(symbols):
            # one trade source per symbol: the synthesized aggTrade repeats the recorded trades
            name = f"{lower}@trade" if f"{lower}@trade" in streams else f"{lower}@aggTrade"
            if name in streams:
                self.subs[name] = (market, name)
            for mark in (f"{lower}@markPrice@1s", f"{lower}@markPrice"):
                if mark in streams:
                    self.subs[mark] = (market, mark)
                    break
        sim.replay.index(self)  # type: ignore[arg-type]  # duck-typed subscriber

    def is_stalled(self, now_ns: int) -> bool:
        return False

    def check_wrapped(self) -> None:
        """Re-subscribe after the replay looped (its subscriber index was cleared)."""
        loops = self._sim.replay.counters["loops"]
        if loops != self._loops:
            self._loops = loops
            self._last_trade_id.clear()
            self._sim.replay.index(self)  # type: ignore[arg-type]

    def send(self, payload: bytes) -> bool:
        """Take one frame's data (the replay's delivery); never congested."""
        data = orjson.loads(payload)
        kind = data.get("e")
        if kind in ("trade", "aggTrade"):
            if data.get("X", "MARKET") != "MARKET":
                return False  # futures insurance-fund / ADL prints are not market trades
            trade_id = int(data["t"] if kind == "trade" else data["l"])
            symbol = data["s"]
            if trade_id <= self._last_trade_id.get(symbol, -1):
                return False
            self._last_trade_id[symbol] = trade_id
            self._on_trade(
                TradePrinted(
                    symbol=symbol,
                    ts_event_ms=int(data["E"]),
                    ts_trade_ms=int(data["T"]),
                    ts_recv_ns=0,
                    trade_id=trade_id,
                    price=float(data["p"]),
                    qty=float(data["q"]),
                    buyer_is_maker=bool(data["m"]),
                    first_trade_id=int(data.get("f", trade_id)),
                )
            )
        elif kind == "markPriceUpdate":
            self._on_mark(
                MarkPriceUpdated(
                    symbol=data["s"],
                    ts_event_ms=int(data["E"]),
                    ts_recv_ns=0,
                    mark_price=float(data["p"]),
                    index_price=float(data.get("i", data["p"])),
                    funding_rate=float(data.get("r", 0) or 0),
                    next_funding_ms=int(data.get("T", 0) or 0),
                )
            )
        return False


def watch_books(sim: SimServer, market: Market, on_book: BookHandler) -> None:
    """Call on_book(symbol, view, ts_ms) after each diff of market the replay applies."""
    views: dict[str, SimBookView] = {}

    def depth_sent(symbol: str, final_update_id: int) -> None:
        book = sim.replay.books.get((market, symbol))
        if book is None or book.last_update_id != final_update_id:
            return  # the same symbol on the other market
        view = views.get(symbol)
        if view is None:
            view = views[symbol] = SimBookView(book)
        on_book(symbol, view, book.last_event_ms or sim.server_time_ms())

    sim.on_depth_sent(depth_sent)


def book_view(sim: SimServer, market: Market, symbol: str) -> SimBookView | None:
    """Return a BookView over the simulator's book of symbol (None without depth data)."""
    book = sim.replay.books.get((market, symbol))
    return None if book is None else SimBookView(book)
