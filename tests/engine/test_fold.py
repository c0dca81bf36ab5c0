"""SymbolFolder: per-second rows and one-minute candles on exchange time.

Hand-built sequences with hand-computed rows, then a property test against a brute-force
reference written here from the documented definitions (it shares no code with engine/fold.py).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.events import TradePrinted
from engine.fold import (
    CANDLE_COLUMNS,
    ROW_COLUMNS,
    BookSample,
    SymbolFolder,
    new_candle_ring,
    new_row_ring,
)
from engine.ring import ColumnRing

M = 1_700_000_040_000  # a minute boundary (epoch ms)
S = M + 7_000  # a second boundary in the middle of that minute
NAN = math.nan

BOOK_NAMES = (
    ["bid", "ask"]
    + [f"bid_depth_{bp}bp" for bp in (30, 100, 300, 1000)]
    + [f"ask_depth_{bp}bp" for bp in (30, 100, 300, 1000)]
)


def book(bid: float, valid: bool = True) -> BookSample:
    """A distinct, recognisable book state: every number derived from `bid`."""
    return BookSample(
        valid,
        bid,
        bid + 2.0,
        (bid + 0.1, bid + 0.2, bid + 0.3, bid + 0.4),
        (bid + 0.5, bid + 0.6, bid + 0.7, bid + 0.8),
    )


def book_values(sample: BookSample) -> dict[str, float]:
    numbers = [sample.bid, sample.ask, *sample.bid_depths, *sample.ask_depths]
    return dict(zip(BOOK_NAMES, numbers, strict=True))


class FakeBook:
    """Stands in for the order book: holds the state the last applied event left."""

    def __init__(self) -> None:
        self.state = BookSample(False, NAN, NAN, (NAN,) * 4, (NAN,) * 4)
        self.sample_calls = 0

    def sample(self) -> BookSample:
        self.sample_calls += 1
        return self.state


class Feed:
    """Drive a folder the way the pipeline does (depth: notify the folder, then apply)."""

    def __init__(self, grace_ms: int = 2500, capacity: int = 10_000) -> None:
        self.book = FakeBook()
        self.folder = SymbolFolder(
            "BTCUSDT", new_row_ring(capacity), new_candle_ring(capacity), grace_ms=grace_ms
        )

    def trade(
        self,
        trade_id: int,
        ts_trade_ms: int,
        price: float,
        qty: float,
        *,
        seller: bool = False,
        ts_event_ms: int | None = None,
        count: int = 1,
    ) -> int:
        return self.folder.on_trade(
            TradePrinted(
                symbol="BTCUSDT",
                ts_event_ms=ts_trade_ms if ts_event_ms is None else ts_event_ms,
                ts_trade_ms=ts_trade_ms,
                ts_recv_ns=0,
                trade_id=trade_id,
                price=price,
                qty=qty,
                buyer_is_maker=seller,
                trade_count=count,
            )
        )

    def depth(self, ts_event_ms: int | None, state: BookSample) -> int:
        closed = self.folder.on_depth_event(ts_event_ms, self.book)
        self.book.state = state
        return closed

    def rows(self) -> pd.DataFrame:
        return self.folder.rows.to_frame()

    def candles(self) -> pd.DataFrame:
        return self.folder.candles.to_frame()


def assert_row(row: pd.Series, **expected: float) -> None:
    for name, want in expected.items():
        have = row[name]
        if isinstance(want, float) and math.isnan(want):
            assert math.isnan(have), f"{name}: {have} != nan"
        elif isinstance(want, float):
            assert have == pytest.approx(want, rel=1e-12), f"{name}: {have} != {want}"
        else:
            assert have == want, f"{name}: {have} != {want}"


def assert_book(row: pd.Series, sample: BookSample | None) -> None:
    if sample is None or not sample.valid:
        assert not row["book_valid"]
        for name in BOOK_NAMES:
            assert math.isnan(row[name]), name
    else:
        assert row["book_valid"]
        assert_row(row, **book_values(sample))


# ------------------------------------------------------------------------- hand-built cases


def test_rows_by_hand_first_trade_mid_second_empty_second_and_flush() -> None:
    feed = Feed()
    b1, b2, b3 = book(99.0), book(98.0), book(97.0)
    assert feed.depth(S - 200, b1) == 0  # before the first trade: no rows yet
    assert feed.trade(1, S + 300, 100.0, 2.0, ts_event_ms=S + 310) == 0
    assert feed.trade(2, S + 500, 102.0, 1.0, seller=True, ts_event_ms=S + 520) == 0
    assert feed.trade(3, S + 900, 99.0, 1.0, count=3, ts_event_ms=S + 905) == 0
    assert feed.depth(S + 950, b2) == 0
    # Trade watermark passes S+1000 and S+2000 is reached, but the depth stream has not.
    assert feed.trade(4, S + 2100, 101.0, 4.0, ts_event_ms=S + 2150) == 0
    # Depth moves to S+2000: rows S and S+1000 (no trades) close together.
    assert feed.depth(S + 2200, b3) == 2
    assert feed.book.sample_calls == 2  # once for second S-1000, once for second S
    rows = feed.rows()
    assert rows["ts"].tolist() == [S, S + 1000]
    assert_row(
        rows.iloc[0],
        open=100.0, high=102.0, low=99.0, close=99.0,
        vwap=401.0 / 4.0, volume=4.0, quote_volume=401.0,
        trades=5, buy_volume=3.0, sell_volume=1.0,
        late_frames=0, resyncs=0, stale_ms=50,  # last frame before S+1000: depth at S+950
    )  # fmt: skip
    assert_book(rows.iloc[0], b2)
    assert_row(
        rows.iloc[1],
        open=99.0, high=99.0, low=99.0, close=99.0, vwap=99.0,
        volume=0.0, quote_volume=0.0, trades=0, buy_volume=0.0, sell_volume=0.0,
        stale_ms=1050,
    )  # fmt: skip
    assert_book(rows.iloc[1], b2)  # no depth event in S+1000: carried forward

    assert feed.folder.flush() == 1
    rows = feed.rows()
    assert rows["ts"].tolist() == [S, S + 1000, S + 2000]
    assert_row(
        rows.iloc[2],
        open=101.0, high=101.0, low=101.0, close=101.0, vwap=101.0,
        volume=4.0, quote_volume=404.0, trades=1, buy_volume=4.0, sell_volume=0.0,
        stale_ms=800,
    )  # fmt: skip
    assert_book(rows.iloc[2], b3)  # sampled at the close: state after the S+2200 event
    assert feed.book.sample_calls == 3

    candles = feed.candles()
    assert len(candles) == 1
    assert_row(
        candles.iloc[0],
        ts=M, open=100.0, high=102.0, low=99.0, close=101.0,
        vwap=805.0 / 8.0, volume=8.0, quote_volume=805.0, trades=6, buy_volume=7.0,
        seconds=3, bid_depth_100bp=b3.bid_depths[1], ask_depth_100bp=b3.ask_depths[1],
    )  # fmt: skip
    assert feed.folder.rows_closed == 3
    assert feed.folder.candles_closed == 1


def test_row_dtypes_match_schema() -> None:
    feed = Feed()
    feed.trade(1, S + 10, 1.0, 1.0)
    feed.folder.flush()
    assert dict(feed.rows().dtypes) == ROW_COLUMNS
    assert dict(feed.candles().dtypes) == CANDLE_COLUMNS


def test_late_trade_is_counted_in_the_open_row_and_not_folded() -> None:
    feed = Feed()
    feed.trade(1, S + 100, 10.0, 1.0)
    feed.depth(S + 200, book(9.0))
    feed.depth(S + 1100, book(8.0))
    assert feed.trade(2, S + 1500, 11.0, 1.0) == 1  # both watermarks past S: row S closes
    assert feed.trade(3, S + 800, 50.0, 7.0, ts_event_ms=S + 1600) == 0  # T in closed row S
    assert feed.folder.late_trades == 1
    feed.depth(S + 2300, book(7.0))
    assert feed.trade(4, S + 2050, 12.0, 1.0) == 1  # row S+1000 closes
    rows = feed.rows()
    assert_row(rows.iloc[0], open=10.0, close=10.0, volume=1.0, trades=1, late_frames=0)
    assert_row(
        rows.iloc[1],
        open=11.0, high=11.0, low=11.0, close=11.0, volume=1.0, trades=1, late_frames=1,
    )  # fmt: skip


def test_duplicate_trades_are_ignored_and_counted() -> None:
    feed = Feed()
    feed.trade(5, S + 100, 10.0, 1.0)
    feed.trade(5, S + 100, 10.0, 1.0)  # injected duplicate frame
    feed.trade(6, S + 200, 20.0, 1.0)
    feed.trade(4, S + 300, 99.0, 1.0)  # older id: also a duplicate
    feed.trade(6, S + 200, 20.0, 1.0)
    assert feed.folder.duplicate_trades == 3
    feed.folder.flush()
    assert_row(
        feed.rows().iloc[0],
        open=10.0, high=20.0, low=10.0, close=20.0, volume=2.0, quote_volume=30.0, trades=2,
        late_frames=0,
    )  # fmt: skip


def test_book_carry_forward_own_second_invalid_and_before_any_depth() -> None:
    feed = Feed(grace_ms=0)
    feed.trade(1, S + 100, 10.0, 1.0)  # row S: no depth seen yet
    feed.depth(S + 1300, book(50.0))  # row S+1000: a depth event, no trade
    feed.depth(S + 2400, book(60.0, valid=False))  # row S+2000: book invalid
    feed.depth(S + 3400, book(70.0))  # row S+3000: valid again
    feed.depth(S + 3600, book(71.0))  # ... last event of S+3000 wins
    feed.folder.on_exchange_time(S + 5500)  # closes up to S+4000 (carry); S+5000 stays open
    rows = feed.rows()
    assert rows["ts"].tolist() == [S + k * 1000 for k in range(5)]
    assert_book(rows.iloc[0], None)
    assert_book(rows.iloc[1], book(50.0))
    assert_book(rows.iloc[2], None)
    assert_book(rows.iloc[3], book(71.0))
    assert_book(rows.iloc[4], book(71.0))
    # Trade columns of depth-only seconds repeat the last close.
    assert rows["close"].tolist() == [10.0] * 5
    assert rows["volume"].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]


def test_invalid_book_gives_nan_whatever_numbers_it_holds() -> None:
    feed = Feed()
    feed.depth(S, book(5.0, valid=False))
    feed.trade(1, S + 1, 1.0, 1.0)
    feed.depth(S + 1000, book(6.0))
    feed.folder.flush()
    rows = feed.rows()
    assert_book(rows.iloc[0], None)
    assert_book(rows.iloc[1], book(6.0))


def test_depth_before_first_trade_is_carried_into_the_first_row() -> None:
    feed = Feed()
    feed.depth(S - 3000, book(40.0))
    feed.depth(S - 2500, book(41.0))
    feed.trade(1, S + 500, 1.0, 1.0)
    feed.folder.flush()
    assert_book(feed.rows().iloc[0], book(41.0))


def test_grace_closes_rows_when_the_trade_stream_is_quiet() -> None:
    feed = Feed()
    feed.trade(1, S + 100, 10.0, 1.0)
    closed = [feed.depth(S + t, book(float(t))) for t in range(200, 3500, 300)]
    assert sum(closed) == 0  # exchange time S+3400 < S+1000+2500
    assert feed.depth(S + 3500, book(1.0)) == 1  # row S closes on the grace deadline
    assert feed.depth(S + 4499, book(2.0)) == 0
    assert feed.depth(S + 4500, book(3.0)) == 1  # row S+1000 (no trade) closes
    rows = feed.rows()
    assert rows["ts"].tolist() == [S, S + 1000]
    assert_book(rows.iloc[0], book(800.0))  # last event of second S was at S+800
    assert_book(rows.iloc[1], book(1700.0))


def test_grace_closes_rows_when_the_depth_stream_is_quiet() -> None:
    feed = Feed(grace_ms=1000)
    feed.trade(1, S + 100, 10.0, 1.0)
    assert feed.trade(2, S + 1100, 11.0, 1.0) == 0  # trades moved on, depth never came
    assert feed.trade(3, S + 1999, 12.0, 1.0) == 0
    assert feed.trade(4, S + 2000, 13.0, 1.0) == 1  # exchange time reached S+1000+1000
    assert feed.folder.on_exchange_time(S + 3000) == 1
    rows = feed.rows()
    assert rows["close"].tolist() == [10.0, 12.0]
    assert_book(rows.iloc[0], None)


def test_zero_grace_and_both_watermarks() -> None:
    feed = Feed(grace_ms=0)
    feed.trade(1, S + 100, 10.0, 1.0)
    assert feed.depth(S + 999, book(1.0)) == 0
    assert feed.depth(S + 1000, book(2.0)) == 1  # exchange time S+1000 >= S+1000+0


def test_book_is_sampled_at_most_once_per_second() -> None:
    feed = Feed()
    trade_id = 0
    for second in range(6):
        for tenth in range(10):
            t = S + second * 1000 + tenth * 100
            feed.depth(t + 50, book(second * 100.0 + tenth))
            trade_id += 1
            feed.trade(trade_id, t + 60, 100.0 + tenth, 1.0)
    feed.folder.flush()
    assert feed.book.sample_calls <= 6
    rows = feed.rows()
    assert len(rows) == 6
    for second in range(6):
        assert_book(rows.iloc[second], book(second * 100.0 + 9))
        assert_row(rows.iloc[second], open=100.0, close=109.0, high=109.0, low=100.0)


def test_snapshot_without_event_time_belongs_to_the_current_depth_second() -> None:
    feed = Feed()
    feed.trade(1, S + 100, 1.0, 1.0)
    feed.depth(S + 200, book(1.0, valid=False))
    feed.depth(None, book(2.0))  # spot REST snapshot: no E
    feed.depth(S + 1200, book(3.0))
    feed.folder.flush()
    rows = feed.rows()
    assert_book(rows.iloc[0], book(2.0))
    assert_book(rows.iloc[1], book(3.0))


def test_resyncs_counted_in_their_row_or_the_next_open_one() -> None:
    feed = Feed(grace_ms=0)
    feed.folder.note_resync(S - 5000)  # before the first trade: goes to the first row
    feed.trade(1, S + 100, 1.0, 1.0)
    feed.folder.note_resync(S + 300)
    feed.folder.note_resync(S + 2100)  # a future second: counted there
    feed.depth(S + 1500, book(1.0))  # closes S
    feed.folder.note_resync(S + 900)  # row S is closed: counted in the open row S+1000
    feed.folder.on_exchange_time(S + 3000)
    rows = feed.rows()
    assert rows["resyncs"].tolist() == [2, 1, 1]


def test_stale_ms_uses_every_frame_time_before_the_end_of_the_second() -> None:
    feed = Feed(grace_ms=0)
    feed.trade(1, S + 100, 1.0, 1.0, ts_event_ms=S + 150)
    feed.folder.on_exchange_time(S + 400)  # e.g. a markPrice frame
    feed.folder.on_exchange_time(S + 3300)  # closes S, S+1000, S+2000
    rows = feed.rows()
    assert rows["stale_ms"].tolist() == [600, 1600, 2600]
    feed.folder.flush()
    assert feed.rows()["stale_ms"].tolist() == [600, 1600, 2600, 700]


def test_other_symbols_time_closes_rows_without_counting_as_activity() -> None:
    feed = Feed(grace_ms=500)
    feed.trade(1, S + 100, 1.0, 1.0)
    assert feed.folder.advance_exchange_time(S + 1499) == 0
    assert feed.folder.advance_exchange_time(S + 2600) == 2  # rows S and S+1000 on grace
    assert feed.folder.advance_exchange_time(S + 2000) == 0  # never moves backwards
    rows = feed.rows()
    assert rows["stale_ms"].tolist() == [900, 1900]  # only the trade at S+100 was this symbol's
    assert feed.folder.flush() == 1  # up to the second of S+2600
    assert feed.rows()["stale_ms"].tolist() == [900, 1900, 2900]


def test_stale_ms_when_nothing_was_seen_before_the_end_of_the_second() -> None:
    feed = Feed()
    feed.trade(1, S + 900, 1.0, 1.0, ts_event_ms=S + 1200)  # its frame time is in S+1000
    feed.folder.flush()
    assert feed.rows()["stale_ms"].tolist() == [1000, 800]


def test_candles_partial_first_minute_close_on_last_second_and_flush() -> None:
    feed = Feed()
    start = M + 57_300
    closed_candles = []
    for k in range(66):  # trades in seconds M+57 .. M+122
        t = start + k * 1000
        feed.depth(t + 100, book(float(k)))
        feed.trade(k + 1, t, 100.0 + k, 1.0 + k, seller=k % 2 == 1)
        closed_candles.append(feed.folder.candles_closed)
    # Row M+59000 closes when trade/depth of M+60000 arrive (k=3).
    assert closed_candles[:3] == [0, 0, 0]
    assert closed_candles[3] == 1
    # Row k closes on iteration k+1; the second candle's last row is k=62 (M+119000).
    assert closed_candles[62] == 1
    assert closed_candles[63] == 2
    feed.folder.flush()
    candles = feed.candles()
    assert candles["ts"].tolist() == [M, M + 60_000, M + 120_000]
    assert candles["seconds"].tolist() == [3, 60, 3]
    first = candles.iloc[0]
    # k = 0, 1, 2: prices 100, 101, 102; qty 1, 2, 3; k=1 is a sell.
    assert_row(
        first,
        open=100.0, high=102.0, low=100.0, close=102.0, volume=6.0,
        quote_volume=100.0 + 202.0 + 306.0, vwap=608.0 / 6.0, trades=3, buy_volume=4.0,
        bid_depth_100bp=book(2.0).bid_depths[1], ask_depth_100bp=book(2.0).ask_depths[1],
    )  # fmt: skip
    second = candles.iloc[1]
    ks = range(3, 63)
    assert_row(
        second,
        open=103.0, high=162.0, low=103.0, close=162.0,
        volume=float(sum(1 + k for k in ks)),
        quote_volume=float(sum((100 + k) * (1 + k) for k in ks)),
        trades=60, buy_volume=float(sum(1 + k for k in ks if k % 2 == 0)),
    )  # fmt: skip
    assert feed.folder.candles_closed == 3


def test_candle_with_only_empty_seconds_uses_the_previous_close() -> None:
    feed = Feed(grace_ms=0)
    feed.trade(1, M + 58_500, 10.0, 2.0)
    feed.folder.on_exchange_time(M + 60_000 + 5_500)
    feed.folder.flush()
    candles = feed.candles()
    assert candles["seconds"].tolist() == [2, 6]
    assert_row(
        candles.iloc[1],
        open=10.0, high=10.0, low=10.0, close=10.0, vwap=10.0, volume=0.0, trades=0,
    )  # fmt: skip


def test_flush_without_trades_emits_nothing() -> None:
    feed = Feed()
    feed.depth(S, book(1.0))
    feed.folder.on_exchange_time(S + 10_000)
    assert feed.folder.flush() == 0
    assert len(feed.folder.rows) == 0
    assert len(feed.folder.candles) == 0


def test_flush_closes_up_to_the_second_of_the_latest_exchange_time() -> None:
    feed = Feed()
    feed.trade(1, S + 100, 1.0, 1.0)
    feed.folder.on_exchange_time(S + 2999)
    assert feed.folder.flush() == 3
    assert feed.rows()["ts"].tolist() == [S, S + 1000, S + 2000]


def test_wrong_ring_schema_is_rejected() -> None:
    with pytest.raises(ValueError):
        SymbolFolder("X", new_candle_ring(4), new_candle_ring(4))
    with pytest.raises(ValueError):
        SymbolFolder("X", new_row_ring(4), ColumnRing({"ts": np.int64}, 4))


def test_rows_ring_wraps_without_growing() -> None:
    feed = Feed(grace_ms=0, capacity=5)
    nbytes = feed.folder.rows.nbytes
    for k in range(50):
        feed.trade(k + 1, S + k * 1000, float(k), 1.0)
    feed.folder.flush()
    assert feed.folder.rows.nbytes == nbytes
    assert feed.rows()["close"].tolist() == [45.0, 46.0, 47.0, 48.0, 49.0]
    assert feed.folder.rows_closed == 50


# --------------------------------------------------------------- property test vs reference


@dataclass
class Ev:
    kind: str  # "trade" | "depth" | "time" (own frame) | "clock" (other symbol) | "resync"
    ts_event_ms: int
    trade: TradePrinted | None = None
    state: BookSample | None = None


def empty_frame(schema: dict[str, np.dtype]) -> pd.DataFrame:
    return pd.DataFrame({name: np.array([], dtype=dtype) for name, dtype in schema.items()})


def reference(events: list[Ev], grace_ms: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows and candles straight from the definitions, by brute force over arrival order."""
    never = -(10**18)
    trade_wm = depth_wm = exchange = never
    last_id = -1
    closed_upto: int | None = None  # rows with ts < closed_upto are closed
    close_index: dict[int, int] = {}  # row ts -> index of the event whose processing closed it
    accepted: list[tuple[int, float, float, bool, int]] = []
    late_in: Counter[int] = Counter()
    resync_in: Counter[int] = Counter()
    pre_start_resyncs: list[int] = []  # seconds of resyncs noted before the first trade
    frame_times: list[tuple[int, int]] = []  # (index, E)
    depth_states: list[tuple[int, int, BookSample]] = []  # (index, second, state after it)

    def row_due(s: int) -> bool:
        end = s + 1000
        return (trade_wm >= end or exchange >= end + grace_ms) and (
            depth_wm >= end or exchange >= end + grace_ms
        )

    for i, ev in enumerate(events):
        if ev.kind == "trade":
            tr = ev.trade
            if tr.trade_id <= last_id:
                continue
            last_id = tr.trade_id
            sec = tr.ts_trade_ms // 1000 * 1000
            if closed_upto is None:
                closed_upto = sec
            if sec < closed_upto:
                late_in[closed_upto] += 1
            else:
                accepted.append((sec, tr.price, tr.qty, tr.buyer_is_maker, tr.trade_count))
            trade_wm = max(trade_wm, tr.ts_trade_ms)
        elif ev.kind == "depth":
            depth_wm = max(depth_wm, ev.ts_event_ms)
            depth_states.append((i, ev.ts_event_ms // 1000 * 1000, ev.state))
        elif ev.kind == "resync":
            sec = ev.ts_event_ms // 1000 * 1000
            if closed_upto is None:
                pre_start_resyncs.append(sec)
            else:
                resync_in[max(sec, closed_upto)] += 1
            continue
        exchange = max(exchange, ev.ts_event_ms)
        if ev.kind != "clock":
            frame_times.append((i, ev.ts_event_ms))
        while closed_upto is not None and row_due(closed_upto):
            close_index[closed_upto] = i
            closed_upto += 1000
    if closed_upto is None:
        return empty_frame(ROW_COLUMNS), empty_frame(CANDLE_COLUMNS)
    flush_to = max(exchange, trade_wm) // 1000 * 1000
    while closed_upto <= flush_to:
        close_index[closed_upto] = len(events)
        closed_upto += 1000

    trades = pd.DataFrame(accepted, columns=["sec", "price", "qty", "maker", "count"])
    trades["quote"] = trades["price"] * trades["qty"]
    trades["buy"] = trades["qty"].where(~trades["maker"].astype(bool), 0.0)
    trades["sell"] = trades["qty"].where(trades["maker"].astype(bool), 0.0)
    grouped = trades.groupby("sec", sort=True).agg(
        open=("price", "first"),
        high=("price", "max"),
        low=("price", "min"),
        close=("price", "last"),
        volume=("qty", "sum"),
        quote_volume=("quote", "sum"),
        trades=("count", "sum"),
        buy_volume=("buy", "sum"),
        sell_volume=("sell", "sum"),
    )
    seconds = sorted(close_index)
    first_sec = seconds[0]
    assert seconds == list(range(first_sec, seconds[-1] + 1, 1000))
    rows = grouped.reindex(seconds)
    rows["close"] = rows["close"].ffill()
    for col in ("open", "high", "low"):
        rows[col] = rows[col].fillna(rows["close"])
    for col in ("volume", "quote_volume", "trades", "buy_volume", "sell_volume"):
        rows[col] = rows[col].fillna(0)
    rows["vwap"] = np.where(
        rows["volume"] > 0, rows["quote_volume"] / rows["volume"].where(rows["volume"] > 0, 1.0),
        rows["close"],
    )  # fmt: skip
    rows.index.name = "ts"
    rows = rows.reset_index()

    book_cols = {name: [] for name in ["book_valid", *BOOK_NAMES]}
    stale, late, resyncs = [], [], []
    for s in seconds:
        k = close_index[s]
        seen = [st_ for idx, sec, st_ in depth_states if idx < k and sec <= s]
        state = seen[-1] if seen else None
        valid = state is not None and state.valid
        book_cols["book_valid"].append(valid)
        for name in BOOK_NAMES:
            book_cols[name].append(book_values(state)[name] if valid else NAN)
        before_end = [e for idx, e in frame_times if idx <= k and e < s + 1000]
        stale.append(max(0, s + 1000 - max(before_end)) if before_end else 1000)
        late.append(late_in[s])
        resyncs.append(resync_in[s] + sum(max(r, first_sec) == s for r in pre_start_resyncs))
    for name, values in book_cols.items():
        rows[name] = values
    rows["late_frames"] = late
    rows["resyncs"] = resyncs
    rows["stale_ms"] = stale
    rows = rows[list(ROW_COLUMNS)].astype(ROW_COLUMNS)

    rows["minute"] = rows["ts"] // 60_000 * 60_000
    candles = rows.groupby("minute", sort=True).agg(
        open=("open", "first"),
        high=("high", "max"),
        low=("low", "min"),
        close=("close", "last"),
        volume=("volume", "sum"),
        quote_volume=("quote_volume", "sum"),
        trades=("trades", "sum"),
        buy_volume=("buy_volume", "sum"),
        seconds=("ts", "count"),
        bid_depth_100bp=("bid_depth_100bp", "last"),
        ask_depth_100bp=("ask_depth_100bp", "last"),
    )
    # groupby "last" skips NaN; the candle takes the minute's last row whatever it holds.
    last_rows = rows.groupby("minute", sort=True).tail(1).set_index("minute")
    candles["bid_depth_100bp"] = last_rows["bid_depth_100bp"]
    candles["ask_depth_100bp"] = last_rows["ask_depth_100bp"]
    candles["vwap"] = np.where(
        candles["volume"] > 0,
        candles["quote_volume"] / candles["volume"].where(candles["volume"] > 0, 1.0),
        candles["close"],
    )
    candles.index.name = "ts"
    candles = candles.reset_index()[list(CANDLE_COLUMNS)].astype(CANDLE_COLUMNS)
    return rows.drop(columns="minute"), candles


@st.composite
def event_sequences(draw: st.DrawFn) -> tuple[list[Ev], int]:
    start = M + draw(st.integers(0, 59_999))
    grace = draw(st.sampled_from([0, 700, 2500]))
    keyed: list[tuple[int, int, Ev]] = []  # (arrival key, stream order, event)

    t = start
    key = start
    trade_id = 100
    trades: list[TradePrinted] = []
    for _ in range(draw(st.integers(0, 50))):
        t += draw(st.integers(0, 2600))
        trade_id += draw(st.integers(1, 3))
        tr = TradePrinted(
            symbol="X",
            ts_event_ms=t + draw(st.integers(0, 300)),
            ts_trade_ms=t,
            ts_recv_ns=0,
            trade_id=trade_id,
            price=100.0 + draw(st.integers(-50, 50)) * 0.01,
            qty=draw(st.integers(1, 5000)) * 0.001,
            buyer_is_maker=draw(st.booleans()),
            trade_count=draw(st.integers(1, 3)),
        )
        key = max(key, tr.ts_event_ms + draw(st.integers(0, 4000)))
        keyed.append((key, len(keyed), Ev("trade", tr.ts_event_ms, trade=tr)))
        trades.append(tr)
        if draw(st.integers(0, 9)) == 0:  # an injected duplicate frame (same or older id)
            dup = trades[draw(st.integers(0, len(trades) - 1))]
            keyed.append((key, len(keyed), Ev("trade", dup.ts_event_ms, trade=dup)))

    e = start - draw(st.integers(0, 3000))
    key = e
    for n in range(draw(st.integers(0, 50))):
        e += draw(st.integers(0, 1600))
        key = max(key, e + draw(st.integers(0, 1500)))
        state = book(1000.0 + n, valid=draw(st.integers(0, 4)) > 0)
        keyed.append((key, len(keyed), Ev("depth", e, state=state)))

    for _ in range(draw(st.integers(0, 4))):
        when = start + draw(st.integers(-2000, 60_000))
        keyed.append((when + draw(st.integers(0, 500)), len(keyed), Ev("time", when)))
    for _ in range(draw(st.integers(0, 4))):
        when = start + draw(st.integers(-2000, 60_000))
        keyed.append((when, len(keyed), Ev("clock", when)))
    for _ in range(draw(st.integers(0, 3))):
        when = start + draw(st.integers(-2000, 60_000))
        keyed.append((when, len(keyed), Ev("resync", when)))

    keyed.sort(key=lambda item: (item[0], item[1]))
    return [ev for _, _, ev in keyed], grace


def run_folder(events: list[Ev], grace_ms: int) -> tuple[Feed, list[pd.DataFrame], int]:
    feed = Feed(grace_ms=grace_ms)
    snapshots = []
    returned = 0
    for i, ev in enumerate(events):
        if ev.kind == "trade":
            returned += feed.folder.on_trade(ev.trade)
        elif ev.kind == "depth":
            returned += feed.depth(ev.ts_event_ms, ev.state)
        elif ev.kind == "time":
            returned += feed.folder.on_exchange_time(ev.ts_event_ms)
        elif ev.kind == "clock":
            returned += feed.folder.advance_exchange_time(ev.ts_event_ms)
        else:
            feed.folder.note_resync(ev.ts_event_ms)
        if i % 7 == 0:
            snapshots.append(feed.rows())
    returned += feed.folder.flush()
    return feed, snapshots, returned


def assert_frames_equal(have: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(have.columns) == list(want.columns)
    assert have["ts"].tolist() == want["ts"].tolist()
    for col in have.columns:
        h, w = have[col].to_numpy(), want[col].to_numpy()
        assert h.dtype == w.dtype, col
        if h.dtype.kind == "f":
            np.testing.assert_allclose(h, w, rtol=1e-9, atol=0, equal_nan=True, err_msg=col)
        else:
            assert h.tolist() == w.tolist(), col


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_sequences())
def test_rows_and_candles_equal_brute_force_reference(case: tuple[list[Ev], int]) -> None:
    events, grace_ms = case
    feed, snapshots, returned = run_folder(events, grace_ms)
    want_rows, want_candles = reference(events, grace_ms)
    got_rows = feed.rows()
    assert_frames_equal(got_rows, want_rows.reset_index(drop=True))
    assert_frames_equal(feed.candles(), want_candles)
    assert returned == feed.folder.rows_closed == len(got_rows)
    # Rows never change after they close: every earlier view is a prefix of the final one.
    for snap in snapshots:
        assert_frames_equal(snap, got_rows.iloc[: len(snap)].reset_index(drop=True))
    n_late = sum(got_rows["late_frames"]) if len(got_rows) else 0
    assert n_late == feed.folder.late_trades
