"""The vote strategy over real data: a month of USDⓈ-M klines, spot klines, and a recorded tape.

A smoke test that can fail: no vote during warm-up, confidence always in [-1, 1] and equal to
its contributions, every signal that can fire on klines fires both ways at least once in a month
(the order-book one cannot: klines carry no book), all three regimes occur, entries are rare
and obey the threshold, spot never shorts, and a second run gives the same decisions.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.config import FoldConfig
from engine.fold import CANDLE_COLUMNS, new_candle_ring, new_row_ring
from engine.model import Market
from engine.replay import replay_tape
from strategy.signals import (
    CandleClosed,
    EnterRequest,
    PositionSide,
    RowClosed,
    StrategyConfig,
    StrategyContext,
    VoteStrategy,
)
from strategy.signals.bars import Bars
from strategy.signals.params import BookImbalanceParams
from strategy.signals.signals_structure import book_imbalance
from strategy.signals.vote_strategy import VoteDecision
from strategy.signals.votes import SIGNAL_NAMES, Regime

SYMBOL = "FILUSDT"


def usdm_candles(path: Path) -> pd.DataFrame:
    """Candle-ring rows from a Binance USDⓈ-M kline archive file (no book columns)."""
    k = pd.read_csv(path)
    return pd.DataFrame({
        "ts": k["open_time"].astype(np.int64),
        "open": k["open"], "high": k["high"], "low": k["low"], "close": k["close"],
        "vwap": np.where(k["volume"] > 0, k["quote_volume"] / k["volume"], k["close"]),
        "volume": k["volume"], "quote_volume": k["quote_volume"],
        "trades": k["count"].astype(np.int64), "buy_volume": k["taker_buy_volume"],
        "seconds": 60, "bid_depth_100bp": np.nan, "ask_depth_100bp": np.nan,
    })[list(CANDLE_COLUMNS)]


def spot_candles(path: Path) -> pd.DataFrame:
    """Candle-ring rows from ccxt spot OHLCV (no VWAP, taker volume or book)."""
    k = pd.read_csv(path)
    ts = pd.to_datetime(k["timestamp"]).astype("datetime64[ms]").astype(np.int64)
    return pd.DataFrame({
        "ts": ts, "open": k["open"], "high": k["high"], "low": k["low"], "close": k["close"],
        "vwap": np.nan, "volume": k["volume"], "quote_volume": np.nan, "trades": 0,
        "buy_volume": np.nan, "seconds": 60, "bid_depth_100bp": np.nan, "ask_depth_100bp": np.nan,
    })[list(CANDLE_COLUMNS)]


@dataclass
class Run:
    decisions: list[VoteDecision]
    requests: list[tuple[int, object]]  # (candle index, request)


def run_vote(frame: pd.DataFrame, market: Market, n: int | None = None) -> Run:
    strategy = VoteStrategy(StrategyConfig(kind="vote"), market)
    ring = new_candle_ring(400)
    decisions: list[VoteDecision] = []
    requests: list[tuple[int, object]] = []
    for i, row in enumerate(frame.iloc[:n].itertuples(index=False)):
        ring.append_row(row)
        ctx = StrategyContext(now_ms=int(row.ts) + 60_000, equity=Decimal(10_000),
                              candles={SYMBOL: ring})
        for request in strategy.on_event(CandleClosed(SYMBOL, int(row.ts)), ctx):
            requests.append((i, request))
        decisions.append(strategy.decisions[SYMBOL])
    return Run(decisions, requests)


@pytest.fixture(scope="module")
def fil_month(shared_data: Path) -> pd.DataFrame:
    return usdm_candles(shared_data / "klines" / "usdm-1m" / "FILUSDT-1m-2023-08.csv.gz")


@pytest.fixture(scope="module")
def month_run(fil_month: pd.DataFrame) -> Run:
    return run_vote(fil_month, Market.USDM)


WARMUP = StrategyConfig().vote.warmup_candles


@pytest.mark.slow
def test_nothing_during_warm_up_then_a_vote_on_every_candle(month_run: Run) -> None:
    actions = [d.action for d in month_run.decisions]
    assert actions[: WARMUP - 1] == ["warmup"] * (WARMUP - 1)
    assert "warmup" not in actions[WARMUP - 1:]
    assert all(d.tally is not None for d in month_run.decisions[WARMUP - 1:])
    assert min(i for i, _ in month_run.requests) >= WARMUP - 1


@pytest.mark.slow
def test_confidence_is_bounded_and_adds_up(month_run: Run) -> None:
    for d in month_run.decisions[WARMUP - 1:]:
        assert d.tally is not None
        assert -1.0 <= d.tally.confidence <= 1.0
        assert d.tally.confidence == pytest.approx(sum(c for _, c in d.tally.contributions))


@pytest.mark.slow
def test_every_kline_signal_fires_both_ways_and_the_book_one_never(month_run: Run) -> None:
    fired = Counter(
        (v.name, v.direction)
        for d in month_run.decisions if d.tally is not None
        for v in d.tally.votes if v.direction
    )
    for name in SIGNAL_NAMES:
        if name == "book_imbalance":
            assert fired[(name, 1)] == fired[(name, -1)] == 0
        else:
            assert fired[(name, 1)] > 0 and fired[(name, -1)] > 0, name
    regimes = Counter(d.regime.regime for d in month_run.decisions if d.regime is not None)
    assert set(regimes) == set(Regime)


@pytest.mark.slow
def test_entries_are_rare_and_obey_the_threshold(month_run: Run) -> None:
    entries = [r for _, r in month_run.requests if isinstance(r, EnterRequest)]
    sides = Counter(r.side for r in entries)
    assert sides[PositionSide.LONG] > 0 and sides[PositionSide.SHORT] > 0
    assert len(entries) < 0.01 * len(month_run.decisions)  # under one per 100 candles
    for r in entries:
        assert abs(r.confidence) >= r.threshold == 0.25
        assert (r.confidence > 0) == (r.side is PositionSide.LONG)
        assert r.strength == pytest.approx(abs(r.confidence))
        assert float(r.stop_distance) == pytest.approx(float(r.reference_price) * 0.01)  # type: ignore[arg-type]


@pytest.mark.slow
def test_a_second_run_decides_the_same(fil_month: pd.DataFrame, month_run: Run) -> None:
    again = run_vote(fil_month, Market.USDM, n=3000)
    assert again.decisions == month_run.decisions[:3000]
    assert again.requests == [(i, r) for i, r in month_run.requests if i < 3000]


def test_spot_ohlcv_never_shorts_and_cvd_abstains_without_taker_volume(shared_data: Path) -> None:
    frame = spot_candles(shared_data / "klines" / "spot-1m-ohlcv" / "marzo_2025_BTCUSDT_1m.csv.gz")
    run = run_vote(frame, Market.SPOT, n=6000)
    assert all(r.side is PositionSide.LONG for _, r in run.requests if isinstance(r, EnterRequest))
    votes = [v for d in run.decisions if d.tally is not None for v in d.tally.votes]
    assert votes and all(v.direction == 0 for v in votes if v.name == "cvd")
    assert any(v.direction != 0 for v in votes if v.name == "rsi_reversion")


def test_a_recorded_tape_is_all_warm_up(tapes: dict[str, Path]) -> None:
    result = replay_tape(tapes["spot_btcusdt"], FoldConfig())
    rows, candles = result.rows, result.candles
    assert len(candles) == 7 and len(rows) > 300
    strategy = VoteStrategy(StrategyConfig(), Market.SPOT)
    row_ring, candle_ring = new_row_ring(400), new_candle_ring(400)
    candle_iter = iter(candles.drop(columns="symbol").itertuples(index=False))
    next_candle = next(candle_iter, None)
    requests = []
    for row in rows.drop(columns="symbol").itertuples(index=False):
        row_ring.append_row(row)
        ctx = StrategyContext(now_ms=int(row.ts) + 1000, equity=Decimal(1000),
                              rows={"BTCUSDT": row_ring}, candles={"BTCUSDT": candle_ring})
        requests += strategy.on_event(RowClosed("BTCUSDT", int(row.ts)), ctx)
        while next_candle is not None and next_candle.ts + 60_000 <= row.ts + 1000:
            candle_ring.append_row(next_candle)
            requests += strategy.on_event(CandleClosed("BTCUSDT", int(next_candle.ts)), ctx)
            next_candle = next(candle_iter, None)
    assert requests == []
    assert len(candle_ring) >= 5
    assert strategy.decisions["BTCUSDT"].action == "warmup"
    # The book signal reads the candles' real depth columns: compare with the tape by hand.
    window = candles.iloc[len(candle_ring) - 5: len(candle_ring)]
    bid, ask = window["bid_depth_100bp"].to_numpy(), window["ask_depth_100bp"].to_numpy()
    mean = float(np.mean((bid - ask) / (bid + ask)))
    vote = book_imbalance(Bars.from_ring(candle_ring, 300), BookImbalanceParams())
    assert vote.direction == (0 if abs(mean) < 0.2 else int(np.sign(mean)))
    assert abs(mean) >= 0.2  # this tape's book leans hard enough for a vote
