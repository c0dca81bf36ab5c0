"""The six price signals on hand-built candles: each fires where built to, and only there."""

from __future__ import annotations

import numpy as np
import pytest
from signals_candles import bars, candles, wilder_atr, wilder_rsi

from strategy.signals.params import (
    AtrMomentumParams,
    BbSqueezeParams,
    BreakoutRetestParams,
    RsiReversionParams,
    VwapPullbackParams,
    VwapReversionParams,
)
from strategy.signals.signals_price import (
    atr_momentum,
    bb_squeeze,
    breakout_retest,
    rsi_reversion,
    vwap_pullback,
    vwap_reversion,
)

# -- Bollinger squeeze ----------------------------------------------------------------------------

BB = BbSqueezeParams()  # 20 candles, 2 sigma, squeeze window 120, lowest 20 %


def _squeeze_then(last_close: float, quiet_tail: bool = True) -> np.ndarray:
    """119 wide swings (+-1), then 20 quiet candles (+-0.01) or more wide swings, then one close."""
    wide = [100.0 + (1.0 if i % 2 else -1.0) for i in range(119)]
    tail = [100.0 + (0.01 if i % 2 else -0.01) for i in range(20)] if quiet_tail else \
        [100.0 + (1.0 if i % 2 else -1.0) for i in range(20)]
    return np.array(wide + tail + [last_close])


@pytest.mark.parametrize("last, direction", [(100.5, 1), (99.5, -1)])
def test_bb_squeeze_fires_on_a_breakout_from_a_squeeze(last: float, direction: int) -> None:
    close = _squeeze_then(last)
    vote = bb_squeeze(bars(candles(close)), BB)
    window = close[-20:]
    mid, half = window.mean(), 2.0 * window.std()
    assert abs(last - mid) > half
    assert (vote.direction, vote.name) == (direction, "bb_squeeze")
    assert vote.strength == pytest.approx(min(1.0, abs(last - mid) / half - 0.5))


def test_bb_squeeze_strength_below_full() -> None:
    close = _squeeze_then(100.0)
    close[-1] = 100.04  # just outside the band the breakout itself widens
    window = close[-20:]
    mid, half = window.mean(), 2.0 * window.std()
    ratio = abs(close[-1] - mid) / half
    assert 1.0 < ratio < 1.5
    assert bb_squeeze(bars(candles(close)), BB).strength == pytest.approx(ratio - 0.5)


def test_bb_squeeze_needs_the_squeeze() -> None:
    close = _squeeze_then(103.5, quiet_tail=False)  # outside wide bands, but no squeeze before
    window = close[-20:]
    assert abs(close[-1] - window.mean()) > 2.0 * window.std()
    assert bb_squeeze(bars(candles(close)), BB).direction == 0


def test_bb_squeeze_needs_a_close_outside_the_bands() -> None:
    assert bb_squeeze(bars(candles(_squeeze_then(100.005))), BB).direction == 0


def test_bb_squeeze_abstains_during_warm_up() -> None:
    assert bb_squeeze(bars(candles(_squeeze_then(100.5)[1:])), BB).direction == 0


# -- VWAP pullback --------------------------------------------------------------------------------

VP = VwapPullbackParams()  # VWAP over 60, trend share over 30, EMA 20 rising over 5


def _trend_with_dip(step: float, dip_to_vwap: bool) -> dict[str, np.ndarray]:
    closes = [100.0 + step * i for i in range(90)]
    data = candles(closes, wick=0.05)
    vwap_t = np.mean(closes[-60:])  # equal volumes: the rolling VWAP is the mean candle VWAP
    if dip_to_vwap:
        if step > 0:
            data["low"][-1] = vwap_t - 0.2
        else:
            data["high"][-1] = vwap_t + 0.2
    return data


@pytest.mark.parametrize("step, direction", [(0.1, 1), (-0.1, -1)])
def test_vwap_pullback_fires_on_a_dip_to_vwap_in_a_trend(step: float, direction: int) -> None:
    vote = vwap_pullback(bars(_trend_with_dip(step, dip_to_vwap=True)), VP)
    assert vote.direction == direction
    assert vote.strength == pytest.approx(1.0)  # every close of the last 30 on the trend side


def test_vwap_pullback_strength_is_the_trend_share() -> None:
    data = _trend_with_dip(0.1, dip_to_vwap=True)
    # 6 of the 30 closes before t pushed below the VWAP of their time: share 24/30 = 0.8.
    for k in range(6):
        data["close"][-20 - 2 * k] = 95.0
        data["vwap"][-20 - 2 * k] = 106.0  # keep the VWAP itself on the trend
    data["low"][-1] = np.mean(data["vwap"][-60:]) - 0.2
    assert vwap_pullback(bars(data), VP).strength == pytest.approx(2 * 24 / 30 - 1)


def test_vwap_pullback_needs_the_dip() -> None:
    assert vwap_pullback(bars(_trend_with_dip(0.1, dip_to_vwap=False)), VP).direction == 0


def test_vwap_pullback_needs_a_trend() -> None:
    closes = [100.0 + (0.5 if i % 2 else -0.5) for i in range(90)]
    data = candles(closes, wick=0.05)
    data["low"][-1] = np.mean(closes[-60:]) - 0.2
    data["close"][-1] = 100.6
    assert vwap_pullback(bars(data), VP).direction == 0


# -- VWAP-band mean reversion ---------------------------------------------------------------------

VR = VwapReversionParams()  # 60 candles, 2 sigma


def _reference_z(vwaps: np.ndarray, volumes: np.ndarray, close: float) -> float:
    vw = float(np.sum(vwaps * volumes) / np.sum(volumes))
    sigma = float(np.sqrt(np.sum(volumes * (vwaps - vw) ** 2) / np.sum(volumes)))
    return (close - vw) / sigma


@pytest.mark.parametrize("last, direction", [(97.0, 1), (103.0, -1)])
def test_vwap_reversion_fades_a_close_beyond_the_band(last: float, direction: int) -> None:
    closes = [99.0 if i % 2 else 101.0 for i in range(59)] + [last]
    volumes = np.array([1.0 + (i % 3) for i in range(60)])
    data = candles(closes, volume=volumes)
    z = _reference_z(data["vwap"], volumes, last)
    vote = vwap_reversion(bars(data), VR)
    assert abs(z) >= 2.0
    assert vote.direction == direction
    assert vote.strength == pytest.approx(min(1.0, abs(z) / 2.0 - 0.5))


def test_vwap_reversion_ignores_a_close_inside_the_band() -> None:
    closes = [99.0 if i % 2 else 101.0 for i in range(59)] + [101.5]
    assert vwap_reversion(bars(candles(closes)), VR).direction == 0


def test_vwap_reversion_abstains_without_volume() -> None:
    closes = [99.0 if i % 2 else 101.0 for i in range(59)] + [90.0]
    assert vwap_reversion(bars(candles(closes, volume=0.0)), VR).direction == 0


# -- breakout retest ------------------------------------------------------------------------------

BR = BreakoutRetestParams()  # range 30, breakout within 10, ATR 14, retest within 0.25 ATR


def _breakout(retest_low: float, last_close: float, fail: bool = False) -> dict[str, np.ndarray]:
    """A 99..101 range, ten closes above 101, then the candle under test."""
    closes = [100.0 + 0.5 * ((i % 4) - 1.5) for i in range(31)]  # 99.25 .. 100.75
    above = [101.6 + 0.1 * (i % 3) for i in range(10)]
    if fail:
        above[6] = 100.8  # back inside the range after the break
    closes = closes + above + [last_close]
    data = candles(closes, wick=0.25)
    data["high"][:31] = 101.0  # the range's top is exactly 101
    data["low"][:31] = 99.0
    data["low"][31:41] = np.minimum(data["open"][31:41], data["close"][31:41]) - 0.1
    data["low"][-1] = retest_low
    return data


def test_breakout_retest_fires_when_the_broken_level_holds() -> None:
    data = _breakout(retest_low=101.05, last_close=101.4)
    atr = wilder_atr(data["high"], data["low"], data["close"], 14)[-1]
    assert 101.0 + 0.25 * atr >= 101.05
    vote = breakout_retest(bars(data), BR)
    assert vote.direction == 1
    assert vote.strength == pytest.approx(min(1.0, 0.5 + 0.4 / atr))


def test_breakout_retest_mirror_for_a_breakdown() -> None:
    up = _breakout(retest_low=101.05, last_close=101.4)
    down = {k: (200.0 - v if k in ("open", "close", "vwap") else v) for k, v in up.items()}
    down["high"], down["low"] = 200.0 - up["low"], 200.0 - up["high"]
    assert breakout_retest(bars(down), BR).direction == -1


def test_breakout_retest_needs_the_retest() -> None:
    assert breakout_retest(bars(_breakout(retest_low=101.5, last_close=101.8)), BR).direction == 0


def test_breakout_retest_rejects_a_failed_breakout() -> None:
    data = _breakout(retest_low=101.05, last_close=101.4, fail=True)
    assert breakout_retest(bars(data), BR).direction == 0


def test_breakout_retest_needs_the_close_to_hold() -> None:
    assert breakout_retest(bars(_breakout(retest_low=100.7, last_close=100.9)), BR).direction == 0


# -- ATR momentum ---------------------------------------------------------------------------------

AM = AtrMomentumParams()  # body >= 1.5 ATR(t-1), close in the outer 25 %, volume >= mean of 20


def _momentum(o: float, c: float, h: float, l: float, volume: float) -> dict[str, np.ndarray]:
    closes = [100.0 + (0.2 if i % 2 else -0.2) for i in range(24)]
    data = candles(closes + [c], volume=[10.0] * 24 + [volume])
    data["open"][-1], data["high"][-1], data["low"][-1] = o, h, l
    return data


@pytest.mark.parametrize("sign", [1, -1])
def test_atr_momentum_fires_on_a_wide_body_closing_at_its_extreme(sign: int) -> None:
    c = 100.0 + sign * 2.5
    h, l = (102.6, 99.9) if sign > 0 else (100.1, 97.4)
    data = _momentum(100.0, c, h, l, volume=20.0)
    atr_before = wilder_atr(data["high"], data["low"], data["close"], 14)[-2]
    vote = atr_momentum(bars(data), AM)
    assert vote.direction == sign
    assert vote.strength == pytest.approx(min(1.0, 2.5 / (1.5 * atr_before) - 0.5))


def test_atr_momentum_needs_volume() -> None:
    assert atr_momentum(bars(_momentum(100.0, 102.5, 102.6, 99.9, volume=5.0)), AM).direction == 0


def test_atr_momentum_needs_a_wide_body() -> None:
    data = _momentum(100.0, 101.2, 101.3, 99.9, volume=20.0)
    atr_before = wilder_atr(data["high"], data["low"], data["close"], 14)[-2]
    assert 1.5 * atr_before > 1.2
    assert atr_momentum(bars(data), AM).direction == 0


def test_atr_momentum_needs_the_close_near_the_extreme() -> None:
    assert atr_momentum(bars(_momentum(100.0, 102.5, 104.0, 99.9, volume=20.0)), AM).direction == 0


# -- RSI mean reversion ---------------------------------------------------------------------------

RR = RsiReversionParams()  # RSI 14, 30 / 70, full strength 10 points beyond


def _drift(up_every: int, up: float, down: float, n: int = 40) -> list[float]:
    closes = [100.0]
    for i in range(1, n):
        closes.append(closes[-1] + (up if i % up_every == 0 else -down))
    return closes


def test_rsi_reversion_buys_oversold() -> None:
    closes = _drift(up_every=4, up=0.5, down=0.5)
    rsi = wilder_rsi(closes, 14)[-1]
    assert 20.0 < rsi < 30.0
    vote = rsi_reversion(bars(candles(closes)), RR)
    assert vote.direction == 1
    assert vote.strength == pytest.approx(0.5 + 0.5 * (30.0 - rsi) / 10.0)


def test_rsi_reversion_sells_overbought_at_full_strength() -> None:
    closes = [100.0 + 0.3 * i for i in range(40)]  # only gains: RSI 100
    vote = rsi_reversion(bars(candles(closes)), RR)
    assert (vote.direction, vote.strength) == (-1, 1.0)


def test_rsi_reversion_quiet_in_the_middle() -> None:
    closes = _drift(up_every=2, up=0.5, down=0.5)
    assert 40.0 < wilder_rsi(closes, 14)[-1] < 60.0
    assert rsi_reversion(bars(candles(closes)), RR).direction == 0
