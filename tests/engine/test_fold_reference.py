"""Rows and candles equal a brute-force reference built from the definitions (hypothesis)."""


from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd
from fold_fakes import (
    BOOK_NAMES,
    NAN,
    Feed,
    M,
    book,
    book_values,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.events import TradePrinted
from engine.fold import (
    CANDLE_COLUMNS,
    ROW_COLUMNS,
    BookSample,
)


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
