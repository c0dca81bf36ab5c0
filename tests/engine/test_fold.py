"""SymbolFolder: per-second rows and one-minute candles on exchange time.

Hand-built sequences with hand-computed rows, then a property test against a brute-force
reference written here from the documented definitions (it shares no code with engine/fold.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from fold_fakes import (
    Feed,
    M,
    S,
    assert_book,
    assert_row,
    book,
)

from engine.fold import (
    CANDLE_COLUMNS,
    ROW_COLUMNS,
    SymbolFolder,
    new_candle_ring,
    new_row_ring,
)
from engine.ring import ColumnRing


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
