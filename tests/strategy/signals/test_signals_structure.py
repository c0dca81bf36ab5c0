"""The six structure and flow signals on hand-built candles: each fires where built to."""

from __future__ import annotations

import math

import numpy as np
import pytest
from signals_candles import bars, candles, ema, wilder_atr

from strategy.signals.params import (
    BookImbalanceParams,
    CvdParams,
    EmaPinchParams,
    FairValueGapParams,
    PocParams,
    SwingFailureParams,
)
from strategy.signals.signals_structure import (
    book_imbalance,
    cvd,
    ema_pinch,
    fair_value_gap,
    point_of_control,
    swing_failure,
    volume_poc,
)


def _mirror(data: dict[str, np.ndarray], around: float = 200.0) -> dict[str, np.ndarray]:
    """Reflect prices (p -> around - p): highs become lows, buying becomes selling."""
    out = dict(data)
    for key in ("open", "close", "vwap"):
        out[key] = around - data[key]
    out["high"], out["low"] = around - data["low"], around - data["high"]
    out["buy_volume"] = data["volume"] - data["buy_volume"]
    out["bid_depth_100bp"] = data["ask_depth_100bp"]
    out["ask_depth_100bp"] = data["bid_depth_100bp"]
    return out


def _range(n: int, center: float = 100.0) -> list[float]:
    return [center + 0.3 * ((i % 3) - 1) for i in range(n)]


# -- swing failure pattern ------------------------------------------------------------------------

SF = SwingFailureParams()  # swing window 20


def _sweep(h: float, l: float, c: float) -> dict[str, np.ndarray]:
    data = candles(_range(20) + [c])
    data["high"][:20], data["low"][:20] = 101.0, 99.0
    data["high"][-1], data["low"][-1] = h, l
    return data


def test_swing_failure_sells_a_sweep_of_the_high_that_closes_back_below() -> None:
    vote = swing_failure(bars(_sweep(h=101.5, l=100.2, c=100.6)), SF)
    assert vote.direction == -1
    assert vote.strength == pytest.approx(0.5 + 0.5 * (101.0 - 100.6) / (101.5 - 100.2))


def test_swing_failure_buys_the_mirror() -> None:
    vote = swing_failure(bars(_mirror(_sweep(h=101.5, l=100.2, c=100.6))), SF)
    assert vote.direction == 1
    assert vote.strength == pytest.approx(0.5 + 0.5 * 0.4 / 1.3)


def test_swing_failure_ignores_a_breakout_that_holds() -> None:
    assert swing_failure(bars(_sweep(h=101.5, l=100.8, c=101.2)), SF).direction == 0


def test_swing_failure_ignores_a_candle_inside_the_range() -> None:
    assert swing_failure(bars(_sweep(h=100.9, l=99.5, c=100.0)), SF).direction == 0


# -- EMA pinch ------------------------------------------------------------------------------------

EP = EmaPinchParams()  # EMA 8 / 21, pinched within 0.2 ATR in the last 5, released at 0.5 ATR


def _flat_then(jumps: list[float]) -> dict[str, np.ndarray]:
    """40 identical candles (range 1, EMAs equal), then closes moved by `jumps`."""
    closes = [100.0] * 40
    for jump in jumps:
        closes.append(closes[-1] + jump)
    return candles(closes)


def _reference_gap(data: dict[str, np.ndarray]) -> tuple[float, float, float]:
    close = list(data["close"])
    fast, slow = ema(close, 8), ema(close, 21)
    atr = wilder_atr(data["high"], data["low"], data["close"], 14)
    return fast[-1] - slow[-1], atr[-1], fast[-1]


def test_ema_pinch_fires_on_the_release_candle() -> None:
    data = _flat_then([8.0])
    gap, atr, _ = _reference_gap(data)
    assert gap >= 0.5 * atr
    vote = ema_pinch(bars(data), EP)
    assert vote.direction == 1
    assert vote.strength == pytest.approx(min(1.0, gap / (0.5 * atr) - 0.5))


def test_ema_pinch_mirror() -> None:
    assert ema_pinch(bars(_flat_then([-8.0])), EP).direction == -1


def test_ema_pinch_only_on_the_first_candle_of_the_release() -> None:
    data = _flat_then([8.0, 1.0])
    gap, atr, _ = _reference_gap(data)
    assert gap >= 0.5 * atr  # still open, but it opened a candle earlier
    assert ema_pinch(bars(data), EP).direction == 0


def test_ema_pinch_needs_the_release() -> None:
    data = _flat_then([2.0])
    gap, atr, _ = _reference_gap(data)
    assert 0 < gap < 0.5 * atr
    assert ema_pinch(bars(data), EP).direction == 0


def test_ema_pinch_needs_a_pinch_before() -> None:
    closes = [100.0 + 0.8 * i for i in range(40)] + [100.0 + 0.8 * 39 + 8.0]
    data = candles(closes)
    fast, slow = ema(list(data["close"]), 8), ema(list(data["close"]), 21)
    atr = wilder_atr(data["high"], data["low"], data["close"], 14)
    assert min(abs(f - s) for f, s in zip(fast[-6:-1], slow[-6:-1], strict=True)) > 0.2 * atr[-2]
    assert ema_pinch(bars(data), EP).direction == 0


# -- cumulative volume delta ----------------------------------------------------------------------

CV = CvdParams()  # 30 candles, |sum(delta)| / sum(volume) >= 0.2


@pytest.mark.parametrize("share, expected", [(0.62, 0.24 / 0.2 - 0.5), (0.7, 1.0)])
def test_cvd_follows_buying_that_moves_price_up(share: float, expected: float) -> None:
    closes = [100.0 + 0.05 * i for i in range(31)]
    vote = cvd(bars(candles(closes, volume=3.0, buy_share=share)), CV)
    assert vote.direction == 1
    assert vote.strength == pytest.approx(expected)


def test_cvd_follows_selling_down() -> None:
    closes = [100.0 - 0.05 * i for i in range(31)]
    vote = cvd(bars(candles(closes, volume=3.0, buy_share=0.35)), CV)
    assert (vote.direction, vote.strength) == (-1, pytest.approx(0.3 / 0.2 - 0.5))


def test_cvd_abstains_when_price_disagrees_with_flow() -> None:
    closes = [100.0 - 0.05 * i for i in range(31)]  # buyers absorbed: price fell
    assert cvd(bars(candles(closes, buy_share=0.7)), CV).direction == 0


def test_cvd_abstains_on_balanced_flow() -> None:
    closes = [100.0 + 0.05 * i for i in range(31)]
    assert cvd(bars(candles(closes, buy_share=0.55)), CV).direction == 0


def test_cvd_abstains_without_taker_volume() -> None:
    data = candles([100.0 + 0.05 * i for i in range(31)], buy_share=0.7)
    data["buy_volume"][-3] = math.nan  # a source without taker volume (e.g. ccxt OHLCV)
    assert cvd(bars(data), CV).direction == 0


# -- fair value gaps ------------------------------------------------------------------------------

FV = FairValueGapParams()  # gaps completed within the last 20 candles, >= 0.1 ATR


def _gap_then(
    test_low: float, test_close: float, touched_before: bool = False
) -> dict[str, np.ndarray]:
    """Quiet 99.5..100.5 candles, a bullish gap [100.5, 101.2], candles above it, then t."""
    data = candles(_range(20), wick=0.0)
    data["high"][:], data["low"][:] = 100.5, 99.5
    impulse = candles([100.4, 102.6, 102.5, 102.7, 102.4, 102.8, test_close], wick=0.0)
    impulse["open"][:2] = 100.4, 100.4
    impulse["high"][:6] = [100.5, 102.7, 103.0, 103.0, 103.0, 103.0]
    impulse["low"][:6] = [100.0, 100.3, 101.2, 102.0, 101.9, 102.1]
    if touched_before:
        impulse["low"][4] = 101.0
    impulse["low"][-1], impulse["high"][-1] = test_low, max(test_close, 102.5)
    data = {k: np.concatenate([data[k], impulse[k]]) for k in data}
    return data


def test_fair_value_gap_buys_the_first_return_into_a_bullish_gap() -> None:
    data = _gap_then(test_low=100.9, test_close=101.5)
    atr = wilder_atr(data["high"], data["low"], data["close"], 14)[-1]
    vote = fair_value_gap(bars(data), FV)
    assert vote.direction == 1
    assert vote.strength == pytest.approx(min(1.0, 0.5 + 0.5 * (101.2 - 100.5) / atr))


def test_fair_value_gap_sells_the_mirror() -> None:
    assert fair_value_gap(bars(_mirror(_gap_then(100.9, 101.5))), FV).direction == -1


def test_fair_value_gap_needs_price_to_reach_the_gap() -> None:
    assert fair_value_gap(bars(_gap_then(test_low=101.6, test_close=102.0)), FV).direction == 0


def test_fair_value_gap_only_on_the_first_return() -> None:
    data = _gap_then(test_low=100.9, test_close=101.5, touched_before=True)
    assert fair_value_gap(bars(data), FV).direction == 0


def test_fair_value_gap_fails_when_price_closes_through_it() -> None:
    assert fair_value_gap(bars(_gap_then(test_low=100.0, test_close=100.3)), FV).direction == 0


# -- volume-profile point of control --------------------------------------------------------------

PC = PocParams()  # 120 candles, 24 bins, 6 ATR away


def _profile_then_drift(last: float) -> dict[str, np.ndarray]:
    """100 heavy candles around 100, then 20 light ones drifting to `last` (range 1 each)."""
    heavy = _range(100)
    drift = list(np.linspace(heavy[-1], last, 21)[1:])
    return candles(heavy + drift, volume=[10.0] * 100 + [1.0] * 20)


def _reference_poc(data: dict[str, np.ndarray]) -> float:
    lo, hi = data["low"][-120:].min(), data["high"][-120:].max()
    width = (hi - lo) / 24
    volume_by_bin = [0.0] * 24
    for price, volume in zip(data["vwap"][-120:], data["volume"][-120:], strict=True):
        volume_by_bin[min(23, int((price - lo) // width))] += volume
    best = max(range(24), key=lambda k: (volume_by_bin[k], -k))
    return lo + (best + 0.5) * width


@pytest.mark.parametrize("last, direction", [(90.0, 1), (110.0, -1)])
def test_poc_pulls_back_toward_the_volume_node(last: float, direction: int) -> None:
    data = _profile_then_drift(last)
    poc = _reference_poc(data)
    assert point_of_control(bars(data), 120, 24) == pytest.approx(poc)
    atr = wilder_atr(data["high"], data["low"], data["close"], 14)[-1]
    z = (last - poc) / atr
    assert abs(z) >= 6.0
    vote = volume_poc(bars(data), PC)
    assert vote.direction == direction
    assert vote.strength == pytest.approx(min(1.0, abs(z) / 6.0 - 0.5))


def test_poc_quiet_near_the_node() -> None:
    assert volume_poc(bars(_profile_then_drift(98.5)), PC).direction == 0


# -- order-book imbalance -------------------------------------------------------------------------

BI = BookImbalanceParams()  # mean of (B - A) / (B + A) over 5 candles, >= 0.2


@pytest.mark.parametrize(
    "bid, ask, direction, strength",
    [(125.0, 75.0, 1, 0.75), (300.0, 100.0, 1, 1.0), (75.0, 125.0, -1, 0.75)],
)
def test_book_imbalance_follows_the_heavier_side(
    bid: float, ask: float, direction: int, strength: float
) -> None:
    vote = book_imbalance(bars(candles([100.0] * 8, bid_depth=bid, ask_depth=ask)), BI)
    assert (vote.direction, vote.strength) == (direction, pytest.approx(strength))


def test_book_imbalance_averages_the_window() -> None:
    bids = [100.0, 100.0, 100.0, 150.0, 150.0, 150.0, 150.0, 100.0]  # last 5: .2 .2 .2 .2 0
    vote = book_imbalance(bars(candles([100.0] * 8, bid_depth=bids, ask_depth=100.0)), BI)
    assert vote.direction == 0  # mean 0.16 < 0.2


def test_book_imbalance_abstains_without_a_book() -> None:
    bids = [300.0] * 7 + [math.nan]  # an invalid book has NaN depths
    data = candles([100.0] * 8, bid_depth=bids, ask_depth=100.0)
    assert book_imbalance(bars(data), BI).direction == 0
