"""Fold one symbol's trades and book states into per-second rows and one-minute candles.

Everything is keyed on exchange time, never on the wall clock, so a replay of a tape gives
the same rows as the live run that recorded it. A trade belongs to the row of its trade time
`T`; book columns are the book's state after the last depth event whose event time `E` falls
in the second. Rows close deterministically from watermarks over the exchange times in the data:

* trade watermark: max `T` seen (Binance trade ids and `T` are monotonic, so once a trade of a
  later second arrived no more trades of an earlier one will come);
* depth watermark: max depth `E` seen;
* exchange time: max of every `E` seen for the symbol (depth, trades, other events).

Row `s` closes when both streams moved past it (`wm >= s + 1000`) or the exchange time is past
it by more than `grace_ms` (the stream is quiet or lagging). Rows close strictly in order, are
written once into a `ColumnRing` and never change afterwards; a trade arriving for a closed row
is "late": counted, not folded. Seconds without a trade repeat the last close.

A long silent stretch (a connection down for hours) is skipped rather than closed second by
second once it is longer than the row ring: only its last `rows.capacity` seconds can still be in
the row ring and only its last `candles.capacity` minutes in the candle ring, and every consumer
reads the rings, so the rings end up exactly as if every second had been closed, at a cost
bounded by their capacities instead of growing with the gap (~6 µs a row: half a second a day).

The book is sampled lazily (sampling costs ~50 µs): `on_depth_event` is called *before* the
event is applied, so when a depth event opens a new second the book still holds the state after
the last event of the previous one, and that is the only moment it is read - at most once per
second. A second whose depth events were all seen before its row closes is sampled at the close.
"""

from __future__ import annotations

import math
from collections import deque
from typing import NamedTuple, Protocol

import numpy as np

from engine.events import TradePrinted
from engine.ring import ColumnRing

DEPTH_BANDS_BP = (30, 100, 300, 1000)

ROW_COLUMNS: dict[str, np.dtype] = {
    name: np.dtype(dtype)
    for name, dtype in [
        ("ts", np.int64),
        ("open", np.float64),
        ("high", np.float64),
        ("low", np.float64),
        ("close", np.float64),
        ("vwap", np.float64),
        ("volume", np.float64),
        ("quote_volume", np.float64),
        ("trades", np.int64),
        ("buy_volume", np.float64),
        ("sell_volume", np.float64),
        ("bid", np.float64),
        ("ask", np.float64),
        *[(f"bid_depth_{bp}bp", np.float64) for bp in DEPTH_BANDS_BP],
        *[(f"ask_depth_{bp}bp", np.float64) for bp in DEPTH_BANDS_BP],
        ("book_valid", np.bool_),
        ("late_frames", np.int64),
        ("resyncs", np.int64),
        ("stale_ms", np.int64),
    ]
}

CANDLE_COLUMNS: dict[str, np.dtype] = {
    name: np.dtype(dtype)
    for name, dtype in [
        ("ts", np.int64),
        ("open", np.float64),
        ("high", np.float64),
        ("low", np.float64),
        ("close", np.float64),
        ("vwap", np.float64),
        ("volume", np.float64),
        ("quote_volume", np.float64),
        ("trades", np.int64),
        ("buy_volume", np.float64),
        ("seconds", np.int64),
        ("bid_depth_100bp", np.float64),
        ("ask_depth_100bp", np.float64),
    ]
}

DEFAULT_GRACE_MS = 2500  # a real USDⓈ-M trade stream lagged its own E by up to 2.05 s
_SECOND_MS = 1000
_MINUTE_MS = 60_000
# Before a symbol's first trade no row exists yet; per-second state older than this (relative to
# the exchange time) is collapsed so an illiquid symbol cannot grow memory while it waits.
_PRE_TRADE_HORIZON_MS = 600_000
_PRE_TRADE_MAX_SECONDS = 2 * _PRE_TRADE_HORIZON_MS // 1000  # collapse in batches, not per second
_NAN = math.nan
_NEVER = -(2**63)  # below any epoch-ms time


class BookSample(NamedTuple):
    """The book columns of a row: best prices and base quantity within 30/100/300/1000 bp of mid."""

    valid: bool
    bid: float
    ask: float
    bid_depths: tuple[float, float, float, float]
    ask_depths: tuple[float, float, float, float]


class SampledBook(Protocol):
    def sample(self) -> BookSample: ...


_NO_BOOK: tuple = (_NAN,) * 10 + (False,)  # bid, ask, 8 depths, book_valid


def _book_columns(sample: BookSample) -> tuple:
    """Turn a sample into the row's book columns; an invalid book gives NaN whatever it holds."""
    if not sample.valid:
        return _NO_BOOK
    return (
        float(sample.bid),
        float(sample.ask),
        *(float(x) for x in sample.bid_depths),
        *(float(x) for x in sample.ask_depths),
        True,
    )


def new_row_ring(capacity: int) -> ColumnRing:
    """Create a ring with the per-second row schema."""
    return ColumnRing(ROW_COLUMNS, capacity)


def new_candle_ring(capacity: int) -> ColumnRing:
    """Create a ring with the one-minute candle schema."""
    return ColumnRing(CANDLE_COLUMNS, capacity)


class _OpenRow:
    """Trade aggregates of one not-yet-closed second that has at least one trade."""

    __slots__ = (
        "buy_volume",
        "close",
        "high",
        "low",
        "open",
        "quote_volume",
        "sell_volume",
        "trades",
        "ts",
        "volume",
    )

    def __init__(self, ts: int, price: float) -> None:
        self.ts = ts
        self.open = self.high = self.low = self.close = price
        self.volume = 0.0
        self.quote_volume = 0.0
        self.trades = 0
        self.buy_volume = 0.0
        self.sell_volume = 0.0


class SymbolFolder:
    """Fold one symbol's events into per-second rows and one-minute candles (exchange time)."""

    def __init__(
        self,
        symbol: str,
        rows: ColumnRing,
        candles: ColumnRing,
        *,
        grace_ms: int = DEFAULT_GRACE_MS,
    ) -> None:
        if rows.dtypes != ROW_COLUMNS or rows.columns != tuple(ROW_COLUMNS):
            raise ValueError("rows ring must have the ROW_COLUMNS schema")
        if candles.dtypes != CANDLE_COLUMNS or candles.columns != tuple(CANDLE_COLUMNS):
            raise ValueError("candles ring must have the CANDLE_COLUMNS schema")
        if grace_ms < 0:
            raise ValueError(f"grace_ms must be >= 0, got {grace_ms}")
        self.symbol = symbol
        self.rows = rows
        self.candles = candles
        self.grace_ms = int(grace_ms)
        # a due stretch this long may hold seconds no ring keeps (two spare minutes: alignment)
        self._skip_after_ms = (rows.capacity + 120) * _SECOND_MS

        self.late_trades = 0
        self.duplicate_trades = 0
        self.rows_closed = 0
        self.candles_closed = 0

        self._last_trade_id = _NEVER
        self._started = False  # a first trade was seen: rows exist from its second on
        self._next_close_ms = 0  # ts of the oldest open row (valid once started)
        self._trade_wm_ms = _NEVER
        self._depth_wm_ms = _NEVER
        self._exchange_ms = _NEVER
        # Row next_close closes when both deadlines are reached (see _close_due).
        self._open_rows: dict[int, _OpenRow] = {}
        self._head: _OpenRow | None = None  # the open row the last trade went to
        self._last_close = _NAN

        # Lazy book sampling.
        self._book: SampledBook | None = None
        self._pending_depth_ms = _NEVER  # second of the latest depth event (p)
        self._pending_sampled = True  # the book state for p is recorded
        self._samples: deque[tuple[int, BookSample]] = deque()  # (second, sample), ascending
        self._book_cols: tuple = _NO_BOOK  # carried forward into rows without a depth event

        # stale_ms: max E per not-yet-closed second, and the max E of everything before.
        self._max_e_by_second: dict[int, int] = {}
        self._max_e_closed = _NEVER

        self._late_pending = 0  # late trades waiting for the next row to close
        self._resyncs_pending = 0  # resyncs of closed seconds, for the next row to close
        self._resyncs_by_second: dict[int, int] = {}

        self._candle: list | None = None  # [ts, open, high, low, close, vol, qv, trades, buy,
        #                                     seconds, bid_depth_100bp, ask_depth_100bp]

    # ----------------------------------------------------------------------------- inputs

    def on_trade(self, trade: TradePrinted) -> int:
        """Fold a trade into the row of its trade time; return the number of rows closed."""
        trade_id = trade.trade_id
        if trade_id <= self._last_trade_id:
            self.duplicate_trades += 1
            return 0
        self._last_trade_id = trade_id
        ts_trade_ms = trade.ts_trade_ms
        second_ms = ts_trade_ms - ts_trade_ms % _SECOND_MS
        row = self._head
        if row is None or row.ts != second_ms:
            row = self._row_for_trade(second_ms, trade.price)
        if row is not None:
            price = trade.price
            qty = trade.qty
            if price > row.high:
                row.high = price
            elif price < row.low:
                row.low = price
            row.close = price
            row.volume += qty
            row.quote_volume += price * qty
            row.trades += trade.trade_count
            if trade.buyer_is_maker:
                row.sell_volume += qty
            else:
                row.buy_volume += qty
        if ts_trade_ms > self._trade_wm_ms:  # noqa: PLR1730 (an `if` beats max() per trade)
            self._trade_wm_ms = ts_trade_ms
        self._see_exchange_time(trade.ts_event_ms)
        if not self._started:
            return 0
        # _close_due's first test, inlined: most trades close nothing.
        end_ms = self._next_close_ms + _SECOND_MS
        if self._exchange_ms < end_ms + self.grace_ms and (
            self._trade_wm_ms < end_ms or self._depth_wm_ms < end_ms
        ):
            return 0
        return self._close_due()

    def on_depth_event(self, ts_event_ms: int | None, book: SampledBook) -> int:
        """Note a depth event (diff or snapshot) before the book applies it; return rows closed.

        A snapshot without an event time (spot) is attributed to the current depth second.
        """
        self._book = book
        if ts_event_ms is None:
            self._pending_sampled = False
            return 0
        second_ms = ts_event_ms - ts_event_ms % _SECOND_MS
        if second_ms > self._pending_depth_ms:
            if not self._pending_sampled:
                # Nothing touched the book since the last event of the pending second.
                self._record_sample(self._pending_depth_ms, book.sample())
            self._pending_depth_ms = second_ms
        # The book is about to change: whatever was recorded for the pending second is stale.
        self._pending_sampled = False
        if ts_event_ms > self._depth_wm_ms:  # noqa: PLR1730 (hot path, as in on_trade)
            self._depth_wm_ms = ts_event_ms
        self._see_exchange_time(ts_event_ms)
        return self._close_due() if self._started else 0

    def on_exchange_time(self, ts_ms: int) -> int:
        """Note the exchange time of any other frame of this symbol; return rows closed."""
        self._see_exchange_time(ts_ms)
        return self._close_due() if self._started else 0

    def advance_exchange_time(self, ts_ms: int) -> int:
        """Move exchange time on from another symbol's frame; return rows closed.

        Lets a quiet symbol's rows close on the grace deadline without counting as its own
        activity: `stale_ms` only looks at this symbol's frames.
        """
        if ts_ms > self._exchange_ms:
            self._exchange_ms = ts_ms
            if self._started:
                return self._close_due()
        return 0

    def note_resync(self, ts_ms: int) -> None:
        """Count a book gap/resync in the row of its second (or the next row to close)."""
        second_ms = ts_ms - ts_ms % _SECOND_MS
        if self._started and second_ms < self._next_close_ms:
            self._resyncs_pending += 1
        else:
            self._resyncs_by_second[second_ms] = self._resyncs_by_second.get(second_ms, 0) + 1

    def flush(self) -> int:
        """Close every open row up to the latest exchange time, then the open candle."""
        closed = 0
        if self._started:
            last_ms = max(self._exchange_ms, self._trade_wm_ms)
            last_second_ms = last_ms - last_ms % _SECOND_MS
            if last_second_ms - self._next_close_ms > self._skip_after_ms:
                closed += self._skip_silence(last_second_ms + _SECOND_MS)
            while self._next_close_ms <= last_second_ms:
                self._close_row()
                closed += 1
        if self._candle is not None:
            self._close_candle()
        return closed

    # ---------------------------------------------------------------------------- helpers

    def _row_for_trade(self, second_ms: int, price: float) -> _OpenRow | None:
        """Find or open the row of a trade's second; None (and counted) when it is late."""
        if not self._started:
            self._start(second_ms)
        elif second_ms < self._next_close_ms:
            self.late_trades += 1
            self._late_pending += 1
            return None
        row = self._open_rows.get(second_ms)
        if row is None:
            row = self._open_rows[second_ms] = _OpenRow(second_ms, price)
        self._head = row
        return row

    def _start(self, first_second_ms: int) -> None:
        """Begin rows at the first trade's second; fold earlier per-second state into it."""
        self._started = True
        self._next_close_ms = first_second_ms
        self._collapse_before(first_second_ms)
        for second_ms in [s for s in self._resyncs_by_second if s < first_second_ms]:
            self._resyncs_pending += self._resyncs_by_second.pop(second_ms)

    def _collapse_before(self, second_ms: int) -> None:
        """Fold exchange times and book samples of seconds before `second_ms` into carries."""
        by_second = self._max_e_by_second
        for s in [s for s in by_second if s < second_ms]:
            self._max_e_closed = max(self._max_e_closed, by_second.pop(s))
        samples = self._samples
        while samples and samples[0][0] < second_ms:
            self._book_cols = _book_columns(samples.popleft()[1])

    def _see_exchange_time(self, ts_ms: int) -> None:
        # Called for every frame: plain `if`s are cheaper than max() here.
        if ts_ms > self._exchange_ms:  # noqa: PLR1730
            self._exchange_ms = ts_ms
        second_ms = ts_ms - ts_ms % _SECOND_MS
        if self._started and second_ms < self._next_close_ms:
            # A frame of an already closed second: it only matters to later rows' stale_ms.
            if ts_ms > self._max_e_closed:  # noqa: PLR1730
                self._max_e_closed = ts_ms
            return
        by_second = self._max_e_by_second
        current = by_second.get(second_ms)
        if current is None:
            by_second[second_ms] = ts_ms
            if not self._started and len(by_second) > _PRE_TRADE_MAX_SECONDS:
                self._collapse_before(self._exchange_ms - _PRE_TRADE_HORIZON_MS)
        elif ts_ms > current:
            by_second[second_ms] = ts_ms

    def _record_sample(self, second_ms: int, sample: BookSample) -> None:
        self._samples.append((second_ms, sample))
        if not self._started and len(self._samples) > _PRE_TRADE_MAX_SECONDS:
            self._collapse_before(self._exchange_ms - _PRE_TRADE_HORIZON_MS)

    def _close_due(self) -> int:
        """Close every row both streams (or the grace deadline) have moved past."""
        closed = 0
        trade_wm = self._trade_wm_ms
        depth_wm = self._depth_wm_ms
        exchange = self._exchange_ms
        grace = self.grace_ms
        # rows whose end is <= due_end are due: the loop's condition below, solved for end
        due_end = exchange - grace
        both_wm = trade_wm if trade_wm < depth_wm else depth_wm  # noqa: FURB136 (per frame)
        if both_wm > due_end:  # noqa: PLR1730
            due_end = both_wm
        if due_end - self._next_close_ms > self._skip_after_ms:
            closed = self._skip_silence(due_end)
        while True:
            end_ms = self._next_close_ms + _SECOND_MS
            if exchange < end_ms + grace and (trade_wm < end_ms or depth_wm < end_ms):
                return closed
            self._close_row()
            closed += 1

    def _skip_silence(self, due_end_ms: int) -> int:
        """Close the rows due before due_end_ms, skipping what no ring keeps of a silent stretch.

        Closes normally through the last second that holds anything (trades, a book sample, a
        frame's time, a resync, pending counts) and the rest of its minute; then appends the
        stretch's whole empty minutes as candles (only the last `candles.capacity` of them, the
        rest would be overwritten) and moves on to the minute where the row ring's last
        `rows.capacity` seconds begin, which the caller closes row by row. Returns rows closed,
        skipped ones included (consumers read at most the ring's length of them).
        """
        last_due_ms = due_end_ms - _SECOND_MS
        last_due_ms -= last_due_ms % _SECOND_MS
        keep_from_ms = last_due_ms - (self.rows.capacity - 1) * _SECOND_MS
        keep_from_ms -= keep_from_ms % _MINUTE_MS
        busy_ms = self._next_close_ms - _SECOND_MS
        if self._late_pending or self._resyncs_pending:
            busy_ms = self._next_close_ms
        seconds = [*self._open_rows, *self._max_e_by_second, *self._resyncs_by_second]
        seconds += [second for second, _ in self._samples]
        if not self._pending_sampled:
            seconds.append(self._pending_depth_ms)
        for second_ms in seconds:
            if busy_ms < second_ms < keep_from_ms:
                busy_ms = second_ms
        skip_from_ms = busy_ms + _SECOND_MS
        skip_from_ms += -skip_from_ms % _MINUTE_MS  # up to the next minute boundary
        if skip_from_ms >= keep_from_ms:
            return 0
        closed = 0
        while self._next_close_ms < skip_from_ms:  # the busy seconds, then the rest of the minute
            self._close_row()
            closed += 1
        minutes = (keep_from_ms - skip_from_ms) // _MINUTE_MS
        c = self._last_close
        bid_100bp, ask_100bp = self._book_cols[3], self._book_cols[7]
        first_kept_ms = keep_from_ms - min(minutes, self.candles.capacity) * _MINUTE_MS
        for minute_ms in range(first_kept_ms, keep_from_ms, _MINUTE_MS):
            # what closing 60 empty rows makes of a minute (see _fold_candle, _close_candle)
            empty = (minute_ms, c, c, c, c, c, 0.0, 0.0, 0, 0.0, 60, bid_100bp, ask_100bp)
            self.candles.append_row(empty)
        self.candles_closed += minutes
        skipped = minutes * (_MINUTE_MS // _SECOND_MS)
        self.rows_closed += skipped
        self._next_close_ms = keep_from_ms
        return closed + skipped

    def _close_row(self) -> None:
        """Write the oldest open row into the ring (and roll the candle)."""
        ts = self._next_close_ms
        end_ms = ts + _SECOND_MS
        self._next_close_ms = end_ms

        # Book columns: the last recorded state of a second <= ts.
        if ts >= self._pending_depth_ms and not self._pending_sampled and self._book is not None:
            self._record_sample(self._pending_depth_ms, self._book.sample())
            self._pending_sampled = True
        samples = self._samples
        if samples and samples[0][0] <= ts:
            sample = samples.popleft()[1]
            while samples and samples[0][0] <= ts:
                sample = samples.popleft()[1]
            self._book_cols = _book_columns(sample)
        book_cols = self._book_cols

        max_e = self._max_e_by_second.pop(ts, None)
        if max_e is not None and max_e > self._max_e_closed:
            self._max_e_closed = max_e
        if self._max_e_closed == _NEVER:
            stale_ms = _SECOND_MS  # no frame at all before the end: silent the whole second
        else:
            stale_ms = max(0, end_ms - self._max_e_closed)

        late = self._late_pending
        self._late_pending = 0
        resyncs = self._resyncs_pending + self._resyncs_by_second.pop(ts, 0)
        self._resyncs_pending = 0

        row = self._open_rows.pop(ts, None)
        if row is None:
            c = self._last_close
            trade_cols: tuple = (ts, c, c, c, c, c, 0.0, 0.0, 0, 0.0, 0.0)
        else:
            if row is self._head:
                self._head = None
            c = row.close
            vwap = row.quote_volume / row.volume if row.volume > 0 else c
            trade_cols = (
                ts,
                row.open,
                row.high,
                row.low,
                c,
                vwap,
                row.volume,
                row.quote_volume,
                row.trades,
                row.buy_volume,
                row.sell_volume,
            )
            self._last_close = c
        self.rows.append_row(trade_cols + book_cols + (late, resyncs, stale_ms))
        self.rows_closed += 1
        self._fold_candle(trade_cols, book_cols)

    def _fold_candle(self, trade_cols: tuple, book_cols: tuple) -> None:
        ts, o, h, low, c, _vwap, volume, quote_volume, trades, buy_volume, _sell = trade_cols
        minute_ms = ts - ts % _MINUTE_MS
        candle = self._candle
        if candle is None:
            candle = self._candle = [minute_ms, o, h, low, c, 0.0, 0.0, 0, 0.0, 0, _NAN, _NAN]
        else:
            candle[2] = max(candle[2], h)
            candle[3] = min(candle[3], low)
            candle[4] = c
        candle[5] += volume
        candle[6] += quote_volume
        candle[7] += trades
        candle[8] += buy_volume
        candle[9] += 1
        candle[10] = book_cols[3]  # bid_depth_100bp
        candle[11] = book_cols[7]  # ask_depth_100bp
        if ts - minute_ms == _MINUTE_MS - _SECOND_MS:
            self._close_candle()

    def _close_candle(self) -> None:
        assert self._candle is not None
        ts, o, h, low, c, volume, quote_volume, trades, buy, seconds, bid100, ask100 = self._candle
        vwap = quote_volume / volume if volume > 0 else c
        self.candles.append_row(
            (ts, o, h, low, c, vwap, volume, quote_volume, trades, buy, seconds, bid100, ask100)
        )
        self._candle = None
        self.candles_closed += 1
