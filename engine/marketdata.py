"""The market-data path shared by live feeds and offline replay: frames -> book -> rows.

One `SymbolMarketData` per symbol owns its order book, its Binance book-sync state machine,
its per-second folder and the row/candle ring buffers. `MarketDataPipeline` decodes raw frames
(the same bytes live sockets and tapes deliver) and routes each event. It does no I/O: when a
book needs a REST snapshot it calls `request_snapshot(symbol)`; the live feed fetches one, a
replay waits for the snapshot recorded in the tape.

Exchange time only moves on plausible event times. The reference is the exchange clock carried
forward by receive time: the pipeline's exchange time plus the receive time elapsed since the
frame that set it (before any frame, the receive time itself). A frame whose `E` runs more than
`MAX_EVENT_LEAD_MS` ahead of it, or a trade whose `T` is far from its own `E`, is malformed:
counted in `PipelineStats.malformed_times`, logged, and dropped, because one far-future time
would make every folder close a row per second up to it in one call. Receive time is never the
reference on its own, so a host clock that is off (or a simulator replaying an old tape, at any
speed) changes nothing; only the *advance* of `E` beyond the advance of receive time counts, and
a real outage advances both. A jump that `JUMP_CONFIRMATIONS` consecutive frames agree on is
real (a clock step, a sped-up simulator resuming after a pause) and is adopted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import structlog

from engine.config import FoldConfig
from engine.events import (
    BookTickerUpdated,
    DepthDiff,
    MarketEvent,
    MarkPriceUpdated,
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

# Real feeds lead the carried-forward exchange clock by < 0.3 s (every recorded tape and capture
# in shared/data); a stalled connection is dropped after 15 s of silence. A frame further ahead
# than this is damaged (a flipped leading digit of E is ~8e9 s).
MAX_EVENT_LEAD_MS = 60_000
# A trade's T trails its E by up to ~2 s on real USDⓈ-M streams; a trade this far behind its own
# event time is later than any grace, so nothing foldable is lost by refusing it, and a damaged
# T cannot start a symbol's rows decades back.
MAX_TRADE_LAG_MS = 600_000
JUMP_CONFIRMATIONS = 3  # consecutive frames agreeing on a jump make it real (a flipped bit is one)
_TIME_LOG_INTERVAL_NS = 10_000_000_000  # at most one implausible-time line per 10 s of receive time

_BOOK_CHANGED = frozenset({SyncResult.APPLIED, SyncResult.SYNCED})
_BOOK_LOST = frozenset({SyncResult.GAP, SyncResult.CROSSED, SyncResult.REJECTED})

_TimedEvent = TradePrinted | DepthDiff | BookTickerUpdated | MarkPriceUpdated
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
    malformed_times: int = 0  # frames dropped for an implausible event or trade time
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
        self._exchange_time_recv_ns = 0  # receive time of the frame that set exchange_time_ms
        self._pushed_exchange_time_ms = 0
        self._jump_offset_ms = 0  # E minus receive time of the last frame refused as ahead
        self._jump_votes = 0  # consecutive refused frames agreeing on that offset
        self._time_log_ns: int | None = None
        self._time_log_suppressed = 0
        self.stats = PipelineStats()
        self._log = structlog.get_logger("engine.marketdata")

    # -- inputs ---------------------------------------------------------------------------
    def on_frame(self, payload: bytes, ts_recv_ns: int) -> MarketEvent | None:
        """Handle one websocket frame (combined-stream envelope bytes); return the event it carried.

        None when the frame carried no usable event: control, malformed, unknown, or dropped for
        an implausible time (a caller must not act on an event the pipeline refused).
        """
        self.stats.frames += 1
        event = self.decoder.decode(payload, ts_recv_ns)
        kind = type(event)
        # Hot path (most frames are trades): the calls to _closed/_advance are inlined, and the
        # time check is a few comparisons unless a frame looks ahead (see _time_refused).
        if kind is TradePrinted:
            trade: TradePrinted = event  # type: ignore[assignment]
            state = self.symbols.get(trade.symbol)
            if state is None:
                self.stats.unknown_symbol += 1
                return trade
            ts = trade.ts_event_ms
            if (
                ts - self.exchange_time_ms > MAX_EVENT_LEAD_MS
                or self._jump_votes
                or not ts - MAX_TRADE_LAG_MS <= trade.ts_trade_ms <= ts + MAX_EVENT_LEAD_MS
            ) and self._time_refused(trade, ts, trade.ts_trade_ms):
                return None
            n_rows = state.folder.on_trade(trade)
            if n_rows and self._on_rows_closed is not None:
                self._on_rows_closed(state, n_rows)
            if ts > self.exchange_time_ms:
                self._advance(ts, ts_recv_ns)
        elif kind is DepthDiff:
            if not self._on_depth(event):  # type: ignore[arg-type]
                return None
        elif event is None:
            return None
        elif kind is ServerShutdownAnnounced:
            self.stats.server_shutdowns += 1
        elif kind is BookTickerUpdated or kind is MarkPriceUpdated:
            ts_ms = event.ts_event_ms  # type: ignore[union-attr]
            state = self.symbols.get(event.symbol)  # type: ignore[union-attr]
            if ts_ms is not None and state is not None:
                if (
                    ts_ms - self.exchange_time_ms > MAX_EVENT_LEAD_MS or self._jump_votes
                ) and self._time_refused(event, ts_ms):  # type: ignore[arg-type]
                    return None
                self._closed(state, state.folder.on_exchange_time(ts_ms))
                self._advance(ts_ms, ts_recv_ns)
        return event

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
        if (
            snapshot.ts_event_ms is not None
            and self._lead_ms(snapshot.ts_event_ms, ts_recv_ns) > MAX_EVENT_LEAD_MS
        ):
            self.stats.malformed_snapshots += 1
            self._log.warning(
                "snapshot_malformed",
                symbol=symbol,
                reason="event time E far ahead of exchange time",
                ts_event_ms=snapshot.ts_event_ms,
                exchange_time_ms=self.exchange_time_ms,
            )
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
    def _on_depth(self, diff: DepthDiff) -> bool:
        """Fold and apply a diff; False when it was refused for an implausible time."""
        state = self.symbols.get(diff.symbol)
        if state is None:
            self.stats.unknown_symbol += 1
            return True
        ts = diff.ts_event_ms
        if (
            ts - self.exchange_time_ms > MAX_EVENT_LEAD_MS or self._jump_votes
        ) and self._time_refused(diff, ts):
            return False  # the next diff shows the gap: the book resyncs, as after any lost frame
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
            self._advance(ts, diff.ts_recv_ns)
        return True

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

    def _advance(self, ts_ms: int, ts_recv_ns: int) -> None:
        if ts_ms > self.exchange_time_ms:
            self.exchange_time_ms = ts_ms
            self._exchange_time_recv_ns = ts_recv_ns
            pushed_ms = self._pushed_exchange_time_ms
            if ts_ms - pushed_ms >= _EXCHANGE_TIME_STEP_MS and len(self.symbols) > 1:
                self._pushed_exchange_time_ms = ts_ms
                for state in self.symbols.values():
                    self._closed(state, state.folder.advance_exchange_time(ts_ms))

    def _lead_ms(self, ts_event_ms: int, ts_recv_ns: int) -> int:
        """Return how far ts_event_ms runs ahead of the exchange clock carried on by receive time."""
        # max(0, ...): a receive clock stepping back must not count as the exchange running ahead
        elapsed_ms = max(0, (ts_recv_ns - self._exchange_time_recv_ns) // 1_000_000)
        return ts_event_ms - self.exchange_time_ms - elapsed_ms

    def _time_refused(
        self, event: _TimedEvent, ts_event_ms: int, ts_trade_ms: int | None = None
    ) -> bool:
        """Judge the times of a frame the fast check flagged; True (counted, logged): drop it."""
        lead_ms = self._lead_ms(ts_event_ms, event.ts_recv_ns)
        if ts_trade_ms is not None and not (
            ts_event_ms - MAX_TRADE_LAG_MS <= ts_trade_ms <= ts_event_ms + MAX_EVENT_LEAD_MS
        ):
            reason = "trade time T far from event time E"
        elif lead_ms <= MAX_EVENT_LEAD_MS:
            self._jump_votes = 0  # an on-time frame: whatever jumped before was damaged
            return False
        else:
            offset_ms = ts_event_ms - event.ts_recv_ns // 1_000_000
            agrees = abs(offset_ms - self._jump_offset_ms) <= MAX_EVENT_LEAD_MS
            self._jump_votes = self._jump_votes + 1 if self._jump_votes and agrees else 1
            self._jump_offset_ms = offset_ms
            if self._jump_votes >= JUMP_CONFIRMATIONS:
                self._jump_votes = 0
                self._log.warning(
                    "exchange_time_jump_adopted",
                    lead_ms=lead_ms,
                    ts_event_ms=ts_event_ms,
                    exchange_time_ms=self.exchange_time_ms,
                    frames=JUMP_CONFIRMATIONS,
                )
                return False
            reason = "event time E far ahead of exchange time"
        self.stats.malformed_times += 1
        self._log_refused(event, reason, ts_event_ms, ts_trade_ms, lead_ms)
        return True

    def _log_refused(
        self,
        event: _TimedEvent,
        reason: str,
        ts_event_ms: int,
        ts_trade_ms: int | None,
        lead_ms: int,
    ) -> None:
        """Log a refused frame: the first, then at most one line per interval of receive time."""
        ts_recv_ns = event.ts_recv_ns
        last = self._time_log_ns
        if last is not None and 0 <= ts_recv_ns - last < _TIME_LOG_INTERVAL_NS:
            self._time_log_suppressed += 1
            return
        self._time_log_ns = ts_recv_ns
        suppressed, self._time_log_suppressed = self._time_log_suppressed, 0
        self._log.warning(
            "frame_time_implausible",
            symbol=event.symbol,
            kind=type(event).__name__,
            reason=reason,
            ts_event_ms=ts_event_ms,
            ts_trade_ms=ts_trade_ms,
            lead_ms=lead_ms,
            exchange_time_ms=self.exchange_time_ms,
            suppressed=suppressed,
        )

    def _closed(self, state: SymbolMarketData, n_rows: int) -> None:
        if n_rows and self._on_rows_closed is not None:
            self._on_rows_closed(state, n_rows)
