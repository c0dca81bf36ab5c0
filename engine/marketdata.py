"""The market-data path shared by live feeds and offline replay: frames -> book -> rows.

One `SymbolMarketData` per symbol owns its order book, its Binance book-sync state machine,
its per-second folder and the row/candle ring buffers. `MarketDataPipeline` decodes raw frames
(the same bytes live sockets and tapes deliver) and routes each event. It does no I/O: when a
book needs a REST snapshot it calls `request_snapshot(symbol)`; the live feed fetches one, a
replay waits for the snapshot recorded in the tape.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import structlog

from engine.config import FoldConfig
from engine.events import (
    DepthDiff,
    MarkPriceUpdated,
    BookTickerUpdated,
    ServerShutdownAnnounced,
    TradePrinted,
)
from engine.fold import CANDLE_COLUMNS, ROW_COLUMNS, BookSample, SymbolFolder
from engine.model import Market
from engine.ring import ColumnRing
from exchange.binance.parse import FrameDecoder, MalformedFrame
from exchange.binance.sync import BookSync, SyncAction, SyncRequest, SyncResult
from exchange.book import OrderBook

_NAN4 = (math.nan, math.nan, math.nan, math.nan)
INVALID_SAMPLE = BookSample(False, math.nan, math.nan, _NAN4, _NAN4)
_EXCHANGE_TIME_STEP_MS = 100  # how often global exchange time is pushed to quiet symbols

_BOOK_CHANGED = frozenset({SyncResult.APPLIED, SyncResult.SYNCED})
_BOOK_LOST = frozenset({SyncResult.GAP, SyncResult.CROSSED, SyncResult.REJECTED})

RowsClosed = Callable[["SymbolMarketData", int], None]


class SymbolMarketData:
    """Book, sync, folder and ring buffers of one symbol."""

    def __init__(
        self,
        symbol: str,
        market: Market,
        fold: FoldConfig,
        tick_size: object = None,
        book_class: type[OrderBook] = OrderBook,
    ) -> None:
        self.symbol = symbol
        self.market = market
        # exchange.book decides the class (compiled core when built); book_class is for
        # benchmarks and tests that run the pure-Python reference side by side
        self.book = book_class(symbol, tick_size)  # type: ignore[arg-type]
        self.sync = BookSync(symbol, market, self.book)
        self.rows = ColumnRing(ROW_COLUMNS, fold.rows_capacity)
        self.candles = ColumnRing(CANDLE_COLUMNS, fold.candles_capacity)
        self.folder = SymbolFolder(symbol, self.rows, self.candles, grace_ms=fold.grace_ms)
        self.last_depth_event_ms: int | None = None
        self.snapshot_requests = 0
        self.gaps = 0

    @property
    def book_valid(self) -> bool:
        return self.sync.valid

    def sample(self) -> BookSample:
        """Return the book state for the row folder (bands computed here, once per second)."""
        if not self.sync.valid:
            return INVALID_SAMPLE
        bid_depths, ask_depths = self.book.depth_bands()
        return BookSample(True, self.book.best_bid(), self.book.best_ask(), bid_depths, ask_depths)


@dataclass
class PipelineStats:
    frames: int = 0
    snapshots: int = 0
    unknown_symbol: int = 0
    server_shutdowns: int = 0
    malformed_snapshots: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


class MarketDataPipeline:
    """Decode frames and drive every symbol's book and folder; identical live and in replay."""

    def __init__(
        self,
        market: Market,
        symbols: Iterable[str],
        fold: FoldConfig,
        *,
        request_snapshot: Callable[[str], None] | None = None,
        on_rows_closed: RowsClosed | None = None,
        on_book_changed: Callable[[SymbolMarketData], None] | None = None,
        tick_sizes: dict[str, object] | None = None,
        book_class: type[OrderBook] = OrderBook,
    ) -> None:
        self.market = market
        self.decoder = FrameDecoder(market)
        tick_sizes = tick_sizes or {}
        self.symbols = {
            s: SymbolMarketData(s, market, fold, tick_sizes.get(s), book_class) for s in symbols
        }
        self._request_snapshot = request_snapshot or (lambda _symbol: None)
        self._on_rows_closed = on_rows_closed
        self._on_book_changed = on_book_changed
        self.exchange_time_ms = 0
        self._pushed_exchange_time_ms = 0
        self.stats = PipelineStats()
        self._log = structlog.get_logger("engine.marketdata")

    # -- inputs ---------------------------------------------------------------------------
    def on_frame(self, payload: bytes, ts_recv_ns: int) -> None:
        """Handle one websocket frame (combined-stream envelope bytes)."""
        self.stats.frames += 1
        event = self.decoder.decode(payload, ts_recv_ns)
        kind = type(event)
        # Hot path (most frames are trades): the calls to _closed/_advance are inlined.
        if kind is TradePrinted:
            trade: TradePrinted = event  # type: ignore[assignment]
            state = self.symbols.get(trade.symbol)
            if state is None:
                self.stats.unknown_symbol += 1
                return
            n_rows = state.folder.on_trade(trade)
            if n_rows and self._on_rows_closed is not None:
                self._on_rows_closed(state, n_rows)
            if trade.ts_event_ms > self.exchange_time_ms:
                self._advance(trade.ts_event_ms)
        elif kind is DepthDiff:
            self._on_depth(event)  # type: ignore[arg-type]
        elif event is None:
            return
        elif kind is ServerShutdownAnnounced:
            self.stats.server_shutdowns += 1
        elif kind is BookTickerUpdated or kind is MarkPriceUpdated:
            ts = event.ts_event_ms  # type: ignore[union-attr]
            state = self.symbols.get(event.symbol)  # type: ignore[union-attr]
            if ts is not None and state is not None:
                self._closed(state, state.folder.on_exchange_time(ts))
                self._advance(ts)

    def on_snapshot(self, symbol: str, payload: bytes, ts_recv_ns: int) -> None:
        """Handle a REST depth snapshot body (fetched live, or recorded in a tape)."""
        state = self.symbols.get(symbol)
        if state is None:
            self.stats.unknown_symbol += 1
            return
        try:
            snapshot = self.decoder.decode_snapshot(payload, symbol, ts_recv_ns)
        except MalformedFrame as exc:
            self.stats.malformed_snapshots += 1
            self._log.warning("snapshot_malformed", symbol=symbol, reason=str(exc))
            if not state.sync.valid:
                self._ask_snapshot(state)
            return
        self.stats.snapshots += 1
        # A snapshot changes the book within the second of the last diff seen (the buffered diffs
        # it bridges are applied with it); only without any diff does its own time (futures E) count.
        ts = state.last_depth_event_ms if state.last_depth_event_ms is not None else snapshot.ts_event_ms
        if ts is not None:
            self._closed(state, state.folder.on_depth_event(ts, state))
        self._handle(state, state.sync.on_snapshot(snapshot), ts)

    def on_connection_lost(self, symbols: Iterable[str], reason: str) -> None:
        """Invalidate the books fed by a lost connection: Binance does not replay missed data."""
        for symbol in symbols:
            state = self.symbols.get(symbol)
            if state is None:
                continue
            ts = state.last_depth_event_ms
            if ts is not None:
                self._closed(state, state.folder.on_depth_event(ts, state))
                state.folder.note_resync(ts)
            state.sync.invalidate(reason)

    def flush(self) -> None:
        """Close every open row and candle (end of an offline replay)."""
        for state in self.symbols.values():
            self._closed(state, state.folder.flush())

    # -- internals ------------------------------------------------------------------------
    def _on_depth(self, diff: DepthDiff) -> None:
        state = self.symbols.get(diff.symbol)
        if state is None:
            self.stats.unknown_symbol += 1
            return
        ts = diff.ts_event_ms
        n_rows = state.folder.on_depth_event(ts, state)
        if n_rows and self._on_rows_closed is not None:
            self._on_rows_closed(state, n_rows)
        state.last_depth_event_ms = ts
        action = state.sync.on_diff(diff)
        if action.result is SyncResult.APPLIED and action.request is SyncRequest.NONE:
            if self._on_book_changed is not None:  # the common case of _handle, inlined
                self._on_book_changed(state)
        else:
            self._handle(state, action, ts)
        if ts > self.exchange_time_ms:
            self._advance(ts)

    def _handle(self, state: SymbolMarketData, action: SyncAction, ts: int | None) -> None:
        result = action.result
        if result in _BOOK_LOST:
            state.gaps += 1
            if ts is not None:
                state.folder.note_resync(ts)
            self._log.warning("book_lost", symbol=state.symbol, result=result.value, reason=action.reason)
        elif result is SyncResult.SYNCED:
            self._log.info("book_synced", symbol=state.symbol, last_update_id=state.sync.last_update_id)
        if action.request is not SyncRequest.NONE:
            self._ask_snapshot(state)
        if self._on_book_changed is not None and result in _BOOK_CHANGED:
            self._on_book_changed(state)

    def _ask_snapshot(self, state: SymbolMarketData) -> None:
        state.snapshot_requests += 1
        self._request_snapshot(state.symbol)

    def _advance(self, ts_ms: int) -> None:
        if ts_ms > self.exchange_time_ms:
            self.exchange_time_ms = ts_ms
            if ts_ms - self._pushed_exchange_time_ms >= _EXCHANGE_TIME_STEP_MS and len(self.symbols) > 1:
                self._pushed_exchange_time_ms = ts_ms
                for state in self.symbols.values():
                    self._closed(state, state.folder.advance_exchange_time(ts_ms))

    def _closed(self, state: SymbolMarketData, n_rows: int) -> None:
        if n_rows and self._on_rows_closed is not None:
            self._on_rows_closed(state, n_rows)
