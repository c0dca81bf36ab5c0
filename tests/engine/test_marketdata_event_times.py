"""Implausible exchange times are malformed; real gaps, skewed clocks and sped-up feeds are not.

The pipeline's contract (engine/marketdata.py): a frame whose `E` runs more than
MAX_EVENT_LEAD_MS ahead of the exchange clock carried on by receive time, or a trade whose `T` is
far from its own `E`, is counted in `stats.malformed_times`, logged and dropped: it moves no time,
so feeding it must be the same as never receiving it. A jump three consecutive frames agree on
is real. The folder's contract (engine/fold.py): a silent stretch longer than the row ring leaves
the rings exactly as closing it second by second would.
"""

from __future__ import annotations

import gzip
import itertools
import json
import math
from pathlib import Path

import pandas as pd
import pytest
from fold_fakes import FakeBook, book
from structlog.testing import capture_logs

from engine.config import FoldConfig
from engine.events import TradePrinted
from engine.fold import SymbolFolder, new_candle_ring, new_row_ring
from engine.marketdata import JUMP_CONFIRMATIONS, MarketDataPipeline
from engine.model import Market
from engine.replay import replay_tape
from engine.tape import TapeFrame, read_tape

DAY_MS = 86_400_000
MINUTE_MS = 60_000
NS_PER_MS = 1_000_000


# ------------------------------------------------------------------------------ helpers
def _frames(path: Path, n: int) -> list[TapeFrame]:
    return list(itertools.islice(read_tape(path), n))


def _pipeline(market: Market, symbols: list[str]) -> MarketDataPipeline:
    return MarketDataPipeline(market, symbols, FoldConfig())


def _feed(pipeline: MarketDataPipeline, frames: list[TapeFrame]) -> None:
    for frame in frames:
        if frame.snapshot_symbol is not None:
            pipeline.on_snapshot(frame.snapshot_symbol, frame.payload, frame.ts_recv_ns)
        else:
            pipeline.on_frame(frame.payload, frame.ts_recv_ns)


def _data(frame: TapeFrame) -> dict:
    return json.loads(frame.payload)["data"]


def _retimed(frame: TapeFrame, *, e_ms: int = 0, t_ms: int = 0, recv_ns: int = 0) -> TapeFrame:
    """The frame with E (and a trade's T) moved; never a markPrice T (the next funding time)."""
    envelope = json.loads(frame.payload)
    data = envelope["data"]
    data["E"] += e_ms
    if t_ms:
        data["T"] += t_ms
    return TapeFrame(frame.ts_recv_ns + recv_ns, json.dumps(envelope).encode())


def _is(frame: TapeFrame, stream_part: bytes) -> bool:
    return frame.snapshot_symbol is None and stream_part in frame.payload[:45]


def _same_books(a: MarketDataPipeline, b: MarketDataPipeline) -> bool:
    return all(
        a.symbols[s].book.levels(side) == b.symbols[s].book.levels(side)
        for s in a.symbols
        for side in ("bid", "ask")
    )


# ------------------------------------------------------------------- far-future frames
def _flip_leading_digit(frame: TapeFrame) -> TapeFrame:
    e = _data(frame)["E"]
    return _retimed(frame, e_ms=int("8" + str(e)[1:]) - e)  # 1.7e12 -> 8.7e12: +220 years


FLIP = None  # the leading digit of E flipped to 8
CORRUPTIONS: dict[str, tuple[str, bytes, tuple[int, int] | None]] = {  # (E shift, T shift) in ms
    "trade E and T a day ahead": ("spot_btcusdt", b"@trade", (DAY_MS, DAY_MS)),
    "trade E a day ahead (issue #8)": ("spot_btcusdt", b"@trade", (DAY_MS, 0)),
    "trade T a day ahead of its E": ("spot_btcusdt", b"@trade", (0, DAY_MS)),
    "trade T a day behind its E": ("spot_btcusdt", b"@trade", (0, -DAY_MS)),
    "trade E with a flipped leading digit": ("spot_btcusdt", b"@trade", FLIP),
    "spot depth E 61 s ahead": ("spot_btcusdt", b"@depth", (61_000, 0)),
    "usdm depth E a day ahead": ("usdm_btcusdt", b"@depth", (DAY_MS, 0)),
    "usdm trade E and T a day ahead": ("usdm_btcusdt", b"@trade", (DAY_MS, DAY_MS)),
    "usdm bookTicker E a day ahead": ("usdm_btcusdt", b"@bookTicker", (DAY_MS, 0)),
    "usdm markPrice E a day ahead": ("usdm_btcusdt_2023a", b"@markPrice", (DAY_MS, 0)),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_a_far_future_time_is_malformed_and_the_same_as_never_receiving_the_frame(
    tapes: dict[str, Path], case: str
) -> None:
    tape, stream_part, shift = CORRUPTIONS[case]
    frames = _frames(tapes[tape], 8000)
    prefix, rest = frames[:6000], frames[6000:]
    victim = next(f for f in reversed(prefix) if _is(f, stream_part))
    if shift is FLIP:
        forged = _flip_leading_digit(victim)
    else:
        forged = _retimed(victim, e_ms=shift[0], t_ms=shift[1])
    market = Market.USDM if tape.startswith("usdm") else Market.SPOT
    fed, clean = _pipeline(market, ["BTCUSDT"]), _pipeline(market, ["BTCUSDT"])
    _feed(fed, prefix)
    _feed(clean, prefix)

    folder = fed.symbols["BTCUSDT"].folder
    exchange_time_ms, rows_closed = fed.exchange_time_ms, folder.rows_closed
    with capture_logs() as logs:
        assert fed.on_frame(forged.payload, forged.ts_recv_ns) is None  # refused: nothing to act on
    assert fed.stats.malformed_times == 1
    assert [entry["event"] for entry in logs] == ["frame_time_implausible"]
    assert fed.exchange_time_ms == exchange_time_ms
    assert folder.rows_closed == rows_closed

    _feed(fed, rest)
    _feed(clean, rest)
    fed.flush()
    clean.flush()
    assert clean.stats.malformed_times == 0
    assert fed.exchange_time_ms == clean.exchange_time_ms
    rows = fed.symbols["BTCUSDT"].rows.to_frame()
    assert len(rows) > 20
    pd.testing.assert_frame_equal(rows, clean.symbols["BTCUSDT"].rows.to_frame())
    assert _same_books(fed, clean)


def test_a_far_future_snapshot_time_is_a_malformed_snapshot(tapes: dict[str, Path]) -> None:
    frames = _frames(tapes["usdm_btcusdt"], 200)
    snapshot = next(f for f in frames if f.snapshot_symbol is not None)
    body = json.loads(snapshot.payload)
    body["E"] += DAY_MS
    pipeline = _pipeline(Market.USDM, ["BTCUSDT"])
    _feed(pipeline, frames[: frames.index(snapshot)])
    pipeline.on_snapshot("BTCUSDT", json.dumps(body).encode(), snapshot.ts_recv_ns)
    assert (pipeline.stats.malformed_snapshots, pipeline.stats.snapshots) == (1, 0)
    assert not pipeline.symbols["BTCUSDT"].book_valid
    pipeline.on_snapshot("BTCUSDT", snapshot.payload, snapshot.ts_recv_ns)  # the real one loads
    assert pipeline.stats.snapshots == 1


def test_damaged_frames_that_agree_but_are_not_consecutive_are_never_adopted(
    tapes: dict[str, Path],
) -> None:
    frames = _frames(tapes["spot_btcusdt"], 1500)
    pipeline = _pipeline(Market.SPOT, ["BTCUSDT"])
    _feed(pipeline, frames[:1000])
    trades = [f for f in frames[1000:] if _is(f, b"@trade")][:8]
    for trade in trades:  # the same +1 day each time, with an on-time trade after each
        damaged = _retimed(trade, e_ms=DAY_MS, t_ms=DAY_MS)
        pipeline.on_frame(damaged.payload, damaged.ts_recv_ns)
        pipeline.on_frame(trade.payload, trade.ts_recv_ns)
        assert pipeline.exchange_time_ms == _data(trade)["E"]
    assert pipeline.stats.malformed_times == len(trades)


# ------------------------------------------------------------- legitimate time jumps
def test_a_reconnect_after_ten_minutes_closes_every_second_of_the_gap(
    tapes: dict[str, Path],
) -> None:
    """The outage moves receive time as much as exchange time: nothing is refused."""
    frames = _frames(tapes["spot_btcusdt"], 6000)
    before, after = frames[:3000], frames[3000:]
    gap_ms = 10 * MINUTE_MS
    after = [
        _retimed(
            f, e_ms=gap_ms, t_ms=gap_ms if _is(f, b"@trade") else 0, recv_ns=gap_ms * NS_PER_MS
        )
        if _is(f, b"@trade") or _is(f, b"@depth")
        else TapeFrame(f.ts_recv_ns + gap_ms * NS_PER_MS, f.payload, f.snapshot_symbol)
        for f in after
    ]
    pipeline = _pipeline(Market.SPOT, ["BTCUSDT"])
    _feed(pipeline, before)
    lost_ms = pipeline.symbols["BTCUSDT"].last_depth_event_ms
    assert lost_ms is not None
    pipeline.on_connection_lost(["BTCUSDT"], "test: network down for 10 minutes")
    _feed(pipeline, after)
    pipeline.flush()
    assert pipeline.stats.malformed_times == 0

    # expected, from the frames' JSON alone: one row per second from the first trade's second to
    # the last second any time reached; trades counted in the second of their T
    trades_by_second: dict[int, int] = {}
    last_ms = 0
    last_price_before_gap = math.nan
    for n, f in enumerate(before + after):
        if not (_is(f, b"@trade") or _is(f, b"@depth")):
            continue
        data = _data(f)
        last_ms = max(last_ms, data["E"], data.get("T", 0))
        if data["e"] == "trade":
            second = data["T"] // 1000 * 1000
            trades_by_second[second] = trades_by_second.get(second, 0) + 1
            if n < len(before):
                last_price_before_gap = float(data["p"])
    first_second = min(trades_by_second)
    rows = pipeline.symbols["BTCUSDT"].rows.to_frame()
    assert rows["ts"].tolist() == list(range(first_second, last_ms // 1000 * 1000 + 1, 1000))
    assert rows["trades"].tolist() == [trades_by_second.get(ts, 0) for ts in rows["ts"]]

    # the seconds no frame reached: after the last one before the loss, before the first after
    silent = rows[rows["ts"].between(lost_ms // 1000 * 1000 + 2000, lost_ms + gap_ms - 3000)]
    assert len(silent) >= 9 * 60  # the outage's seconds are rows of their own
    assert (silent["volume"] == 0).all()
    assert (silent["close"] == last_price_before_gap).all()
    assert not silent["book_valid"].any()  # the book was lost with the connection
    assert (silent["stale_ms"].diff().dropna() == 1000).all()  # staleness grows second by second


def test_a_jump_three_consecutive_frames_agree_on_is_adopted(tapes: dict[str, Path]) -> None:
    """A sped-up simulator resuming after a pause: E jumps 10 min while receive time moved 1 s."""
    frames = _frames(tapes["spot_btcusdt"], 3000)
    pipeline = _pipeline(Market.SPOT, ["BTCUSDT"])
    _feed(pipeline, frames[:2000])
    jump_ms = 10 * MINUTE_MS
    timed = [f for f in frames[2000:] if _is(f, b"@trade") or _is(f, b"@depth")]
    later = [
        _retimed(
            f, e_ms=jump_ms, t_ms=jump_ms if _is(f, b"@trade") else 0, recv_ns=NS_PER_MS * 1000
        )
        for f in timed
    ]
    with capture_logs() as logs:
        _feed(pipeline, later)
    assert pipeline.stats.malformed_times == JUMP_CONFIRMATIONS - 1
    assert "exchange_time_jump_adopted" in [entry["event"] for entry in logs]
    assert pipeline.exchange_time_ms == max(_data(f)["E"] for f in later)


@pytest.mark.parametrize("shift_h", [-2, 3])
def test_a_host_clock_hours_off_refuses_at_most_two_frames(
    tapes: dict[str, Path], shift_h: int
) -> None:
    """Receive time is never the reference on its own: only its advance against E counts."""
    frames = _frames(tapes["spot_btcusdt"], 4000)
    shift_ns = shift_h * 3_600_000 * NS_PER_MS
    skewed = [TapeFrame(f.ts_recv_ns + shift_ns, f.payload, f.snapshot_symbol) for f in frames]
    on_time, off = _pipeline(Market.SPOT, ["BTCUSDT"]), _pipeline(Market.SPOT, ["BTCUSDT"])
    _feed(on_time, frames)
    _feed(off, skewed)
    on_time.flush()
    off.flush()
    # a host clock behind the exchange makes the first frames look ahead until three agree
    assert off.stats.malformed_times == (JUMP_CONFIRMATIONS - 1 if shift_h < 0 else 0)
    assert off.exchange_time_ms == on_time.exchange_time_ms
    trade_columns = ["ts", "open", "high", "low", "close", "volume", "trades", "buy_volume"]
    got = off.symbols["BTCUSDT"].rows.to_frame()[trade_columns]
    pd.testing.assert_frame_equal(got, on_time.symbols["BTCUSDT"].rows.to_frame()[trade_columns])


@pytest.mark.parametrize("speed", [1.0, 60.0, math.inf])
def test_a_simulator_at_any_speed_refuses_nothing(tapes: dict[str, Path], speed: float) -> None:
    """The loopback simulator sends the tape's own E while the engine stamps its clock: at speed
    60 exchange time runs 60x receive time, flat out it runs while receive time stands still."""
    frames = _frames(tapes["usdm_btcusdt"], 20_000)
    start_ns = 1_800_000_000_000 * NS_PER_MS  # the engine's clock: years after the recording
    sent = [
        TapeFrame(
            start_ns
            + (0 if math.isinf(speed) else int((f.ts_recv_ns - frames[0].ts_recv_ns) / speed)),
            f.payload,
            f.snapshot_symbol,
        )
        for f in frames
    ]
    recorded, simulated = _pipeline(Market.USDM, ["BTCUSDT"]), _pipeline(Market.USDM, ["BTCUSDT"])
    _feed(recorded, frames)
    _feed(simulated, sent)
    recorded.flush()
    simulated.flush()
    assert simulated.stats.malformed_times == 0
    pd.testing.assert_frame_equal(
        simulated.symbols["BTCUSDT"].rows.to_frame(), recorded.symbols["BTCUSDT"].rows.to_frame()
    )


# ------------------------------------------------------------------ recorded tapes
def _expected_row_seconds(path: Path) -> list[int]:
    """Every second from the first trade's T to the latest E or trade T, read with plain json."""
    first_trade_ms: int | None = None
    last_ms = 0
    with gzip.open(path, "rt") as fh:
        for line in fh:
            body = json.loads(line.split(" ", 1)[1])
            data = body.get("data", body)
            times = [data["E"]] if "E" in data else []
            if data.get("e") in ("trade", "aggTrade"):
                times.append(data["T"])
                if first_trade_ms is None:
                    first_trade_ms = data["T"]
            last_ms = max(last_ms, *times) if times else last_ms
    assert first_trade_ms is not None
    return list(range(first_trade_ms // 1000 * 1000, last_ms // 1000 * 1000 + 1, 1000))


@pytest.mark.parametrize(
    "name",
    ["spot_btcusdt", "spot_ethusdt", "usdm_btcusdt", "usdm_btcusdt_2023a", "usdm_btcusdt_2023b"],
)
def test_replaying_a_recorded_tape_refuses_nothing_and_closes_every_second(
    tapes: dict[str, Path], name: str
) -> None:
    result = replay_tape(tapes[name], FoldConfig())
    assert result.pipeline.stats.malformed_times == 0
    assert result.rows["ts"].tolist() == _expected_row_seconds(tapes[name])
    # (347, 347, 346, 101, 411 rows: the counts before this contract existed)


def test_replaying_the_multi_symbol_captures_refuses_nothing(shared_data: Path) -> None:
    for capture in sorted((shared_data / "binance-captures-2021").iterdir()):
        if not capture.is_dir():
            continue
        result = replay_tape(capture, FoldConfig())
        assert result.pipeline.stats.malformed_times == 0, capture.name
        for symbol, rows in result.rows.groupby("symbol"):
            assert (rows["ts"].diff().dropna() == 1000).all(), (capture.name, symbol)


# --------------------------------------------------------------- the folder's skip
M0 = 1_700_000_040_000  # a minute boundary


def _folder(rows: int = 600, candles: int = 30) -> tuple[SymbolFolder, FakeBook]:
    folder = SymbolFolder("BTCUSDT", new_row_ring(rows), new_candle_ring(candles), grace_ms=2500)
    return folder, FakeBook()


def _trade(trade_id: int, ts_ms: int, price: float) -> TradePrinted:
    return TradePrinted("BTCUSDT", ts_ms, ts_ms, 0, trade_id, price, 0.5, False, 1, trade_id)


def _before_a_silence(folder: SymbolFolder, fake: FakeBook) -> int:
    """Some trades, book states, a late trade and a resync; return the last time seen."""
    for i in range(40):
        ts = M0 + 13_000 + i * 700
        folder.on_depth_event(ts, fake)
        fake.state = book(100.0 + i)
        folder.on_trade(_trade(i + 1, ts + 5, 200.0 + i))
    folder.on_trade(_trade(99, M0 + 13_000, 1.0))  # late by then: counted in the next row
    folder.note_resync(M0 + 13_000 + 39 * 700)
    return M0 + 13_000 + 39 * 700 + 5


def _check_after_silence(folder: SymbolFolder, target_ms: int) -> None:
    """What closing every second up to target_ms leaves in small rings, derived by hand."""
    last_row = (target_ms - 2500) // 1000 * 1000 - 1000  # rows end <= exchange time - grace
    first_row = (M0 + 13_000 + 5) // 1000 * 1000  # the first trade's second
    assert folder.rows_closed == (last_row - first_row) // 1000 + 1
    rows = folder.rows.to_frame()
    assert rows["ts"].tolist() == list(range(last_row - 599_000, last_row + 1, 1000))
    assert (rows["volume"] == 0).all() and (rows["close"] == 239.0).all()  # the last price
    assert (rows["bid"] == 139.0).all()  # the last book state carried through the silence
    assert (rows["late_frames"] == 0).all() and (rows["resyncs"] == 0).all()
    candles = folder.candles.to_frame()
    last_candle = (last_row + 1000) // MINUTE_MS * MINUTE_MS - MINUTE_MS  # the last whole minute
    assert candles["ts"].tolist() == list(
        range(last_candle - 29 * MINUTE_MS, last_candle + 1, MINUTE_MS)
    )
    assert (candles["seconds"] == 60).all() and (candles["volume"] == 0).all()
    assert (candles["close"] == 239.0).all() and (candles["bid_depth_100bp"] == 139.2).all()


def test_a_day_of_silence_leaves_the_rings_as_closing_every_second_would() -> None:
    jumped, fake_a = _folder()
    stepped, fake_b = _folder()
    last_ms = _before_a_silence(jumped, fake_a)
    _before_a_silence(stepped, fake_b)
    target_ms = last_ms + DAY_MS + 17_300
    closed_before = jumped.rows_closed

    n_jumped = jumped.on_exchange_time(target_ms)
    # the same silence a second at a time (other symbols' frames move exchange time): a row or
    # two per call, never a skip
    steps = [*range(last_ms + 1000, target_ms, 1000), target_ms]
    n_stepped = sum(stepped.advance_exchange_time(ts) for ts in steps)
    assert n_jumped == n_stepped == jumped.rows_closed - closed_before
    pd.testing.assert_frame_equal(jumped.rows.to_frame(), stepped.rows.to_frame())
    pd.testing.assert_frame_equal(jumped.candles.to_frame(), stepped.candles.to_frame())
    assert jumped.candles_closed == stepped.candles_closed
    _check_after_silence(jumped, target_ms)
    # the rows before the silence were closed as usual: the late trade and the resync counted
    assert stepped.rows.total_appended == jumped.rows_closed
    assert jumped.rows.total_appended < 800  # about one ring of rows, not a day of them


def test_a_silence_of_two_centuries_costs_about_a_ring() -> None:
    """A flipped leading digit of E (~7e12 ms) that got this far must not stall the folder."""
    folder, fake = _folder()
    last_ms = _before_a_silence(folder, fake)
    target_ms = last_ms + 7_000_000_000_000
    folder.on_exchange_time(target_ms)
    _check_after_silence(folder, target_ms)
    # bounded work whatever the silence: a ring of rows and a ring of candles, plus alignment
    assert folder.rows.total_appended <= 60 + 600 + 60
    assert folder.candles.total_appended <= 1 + 30 + 11


def test_counts_pending_when_a_silence_starts_stay_before_it() -> None:
    """A late trade and a resync noted after every row closed belong to the silence's first
    second, which no ring keeps: they must not land in a row after it."""
    folder, fake = _folder()
    _before_a_silence(folder, fake)
    folder.advance_exchange_time(M0 + 60_000 + 2500)  # every row to the minute's end closes
    folder.on_trade(_trade(200, M0 + 20_000, 5.0))
    folder.note_resync(M0 + 20_000)
    target_ms = M0 + DAY_MS + 2500  # the ring's oldest row then starts a minute: the first row
    folder.advance_exchange_time(target_ms)  # closed after a skip is in the ring
    _check_after_silence(folder, target_ms)


def test_trades_after_a_long_silence_fold_into_their_own_seconds() -> None:
    folder, fake = _folder()
    last_ms = _before_a_silence(folder, fake)
    resume_ms = last_ms + 5 * 3_600_000 + 250
    folder.on_trade(_trade(100, resume_ms, 300.0))
    folder.on_trade(_trade(101, resume_ms + 1000, 301.0))
    folder.flush()
    rows = folder.rows.to_frame()
    assert rows["ts"].iloc[-1] == (resume_ms + 1000) // 1000 * 1000
    assert rows["close"].iloc[-2:].tolist() == [300.0, 301.0]
    assert (rows["close"].iloc[:-2] == 239.0).all()
    assert (rows["ts"].diff().dropna() == 1000).all()
