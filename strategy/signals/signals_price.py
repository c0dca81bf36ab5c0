"""Vote signals on price against its bands and levels: squeeze, VWAP, breakouts, momentum, RSI.

Each signal is a pure function `(bars, params) -> Vote` over the candle window that ends with the
candle that just closed (index -1, called t below). A window shorter than `params.lookback` or
holding NaN where a signal needs numbers makes it abstain. Exact definitions: docs/strategies.md.
"""

from __future__ import annotations

import numpy as np

from strategy.signals.bars import Bars, excess_strength, rolling_vwap
from strategy.signals.params import (
    AtrMomentumParams,
    BbSqueezeParams,
    BreakoutRetestParams,
    RsiReversionParams,
    VwapPullbackParams,
    VwapReversionParams,
)
from strategy.signals.votes import Vote


def _finite(*values: float) -> bool:
    return all(np.isfinite(v) for v in values)


def bb_squeeze(bars: Bars, p: BbSqueezeParams) -> Vote:
    """Vote with a close outside the Bollinger bands right after they were at their narrowest."""
    name = "bb_squeeze"
    if len(bars) < p.lookback:
        return Vote.abstain(name)
    close = bars.close[-p.lookback:]
    mid, sd = _rolling_mean_std(close, p.period)  # squeeze_window + 1 windows, the last ends at t
    half_band = p.nbdev * sd
    width = 2.0 * half_band / mid
    if not np.isfinite(width).all() or not half_band[-1] > 0:
        return Vote.abstain(name)
    # Squeeze: the width of t-1 is among the narrowest `squeeze_quantile` of the window's widths.
    at_or_below = np.count_nonzero(width[:-1] <= width[-2])
    if at_or_below > p.squeeze_quantile * p.squeeze_window:
        return Vote.abstain(name)
    distance = close[-1] - mid[-1]
    if abs(distance) <= half_band[-1]:
        return Vote.abstain(name)
    return Vote.of(name, 1 if distance > 0 else -1, excess_strength(abs(distance) / half_band[-1]))


def _rolling_mean_std(values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population std of every n-long window of values (by running sums)."""
    shifted = values - values[-1]  # centred near zero, so the sums of squares lose no precision
    s1 = np.concatenate(([0.0], np.cumsum(shifted)))
    s2 = np.concatenate(([0.0], np.cumsum(shifted * shifted)))
    mean = (s1[n:] - s1[:-n]) / n
    var = np.maximum((s2[n:] - s2[:-n]) / n - mean * mean, 0.0)
    return mean + values[-1], np.sqrt(var)


def _rolling_vwap_series(bars: Bars, window: int, count: int) -> np.ndarray:
    """VWAP over `window` candles ending at each of the last `count` candles (oldest first)."""
    price, volume = bars.volume_weights(window + count - 1)
    pv = np.concatenate(([0.0], np.cumsum(price * volume)))
    v = np.concatenate(([0.0], np.cumsum(volume)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pv[window:] - pv[:-window]) / (v[window:] - v[:-window])


def vwap_pullback(bars: Bars, p: VwapPullbackParams) -> Vote:
    """Vote with a trend whose candle dips to the rolling VWAP and closes back on the trend side."""
    name = "vwap_pullback"
    if len(bars) < p.lookback:
        return Vote.abstain(name)
    vwap = _rolling_vwap_series(bars, p.vwap_window, p.trend_window + 1)
    closes = bars.close[-p.trend_window - 1:-1]
    ema = bars.ema(p.ema_period)
    ema_now, ema_then = ema[-1], ema[-1 - p.ema_slope_bars]
    if not _finite(vwap[-1], ema_now, ema_then) or not np.isfinite(vwap[:-1]).all():
        return Vote.abstain(name)
    share_above = float(np.mean(closes > vwap[:-1]))
    share_below = float(np.mean(closes < vwap[:-1]))
    low, high, close = bars.low[-1], bars.high[-1], bars.close[-1]
    if share_above >= p.min_side_share and ema_now > ema_then and low <= vwap[-1] < close:
        return Vote.of(name, 1, 2.0 * share_above - 1.0)
    if share_below >= p.min_side_share and ema_now < ema_then and high >= vwap[-1] > close:
        return Vote.of(name, -1, 2.0 * share_below - 1.0)
    return Vote.abstain(name)


def vwap_reversion(bars: Bars, p: VwapReversionParams) -> Vote:
    """Vote against a close `band_sigmas` volume-weighted deviations beyond the rolling VWAP."""
    name = "vwap_reversion"
    if len(bars) < p.lookback:
        return Vote.abstain(name)
    vwap, sigma = rolling_vwap(bars, p.window)
    if not _finite(vwap, sigma) or sigma <= 0:
        return Vote.abstain(name)
    z = (bars.close[-1] - vwap) / sigma
    if abs(z) < p.band_sigmas:
        return Vote.abstain(name)
    return Vote.of(name, -1 if z > 0 else 1, excess_strength(abs(z) / p.band_sigmas))


def breakout_retest(bars: Bars, p: BreakoutRetestParams) -> Vote:
    """Vote with a broken range level that price comes back to test and holds."""
    name = "breakout_retest"
    if len(bars) < p.lookback:
        return Vote.abstain(name)
    bw, rw = p.breakout_window, p.range_window
    resistance = float(bars.high[-1 - bw - rw:-1 - bw].max())
    support = float(bars.low[-1 - bw - rw:-1 - bw].min())
    atr = bars.atr(p.atr_period)[-1]
    if not _finite(resistance, support, atr) or atr <= 0:
        return Vote.abstain(name)
    recent = bars.close[-1 - bw:-1]
    low, high, close = bars.low[-1], bars.high[-1], bars.close[-1]
    retest_up = low <= resistance + p.retest_atr * atr
    if _held_after_first(recent > resistance) and retest_up and close > resistance:
        return Vote.of(name, 1, min(1.0, 0.5 + (close - resistance) / atr))
    retest_down = high >= support - p.retest_atr * atr
    if _held_after_first(recent < support) and retest_down and close < support:
        return Vote.of(name, -1, min(1.0, 0.5 + (support - close) / atr))
    return Vote.abstain(name)


def _held_after_first(beyond: np.ndarray) -> bool:
    """True when some close broke the level and every close since the first break stayed beyond."""
    if not beyond.any():
        return False
    return bool(beyond[int(np.argmax(beyond)):].all())


def atr_momentum(bars: Bars, p: AtrMomentumParams) -> Vote:
    """Vote with a candle whose body exceeds `body_atr` ATRs, closing near its extreme on volume."""
    name = "atr_momentum"
    if len(bars) < p.lookback:
        return Vote.abstain(name)
    atr_before = bars.atr(p.atr_period)[-2]
    o, h, l, c = bars.open[-1], bars.high[-1], bars.low[-1], bars.close[-1]
    body, span = c - o, h - l
    if not _finite(atr_before, body, span) or atr_before <= 0 or span <= 0:
        return Vote.abstain(name)
    ratio = abs(body) / (p.body_atr * atr_before)
    mean_volume = float(np.mean(bars.volume[-1 - p.volume_window:-1]))
    if ratio < 1.0 or not bars.volume[-1] >= p.volume_ratio * mean_volume:
        return Vote.abstain(name)
    if body > 0 and (c - l) / span >= p.close_in_range:
        return Vote.of(name, 1, excess_strength(ratio))
    if body < 0 and (h - c) / span >= p.close_in_range:
        return Vote.of(name, -1, excess_strength(ratio))
    return Vote.abstain(name)


def rsi_reversion(bars: Bars, p: RsiReversionParams) -> Vote:
    """Vote against an RSI in its oversold or overbought zone."""
    name = "rsi_reversion"
    if len(bars) < p.lookback:
        return Vote.abstain(name)
    rsi = bars.rsi(p.period)[-1]
    if not np.isfinite(rsi):
        return Vote.abstain(name)
    if rsi <= p.oversold:
        return Vote.of(name, 1, 0.5 + 0.5 * (p.oversold - rsi) / p.full_strength_points)
    if rsi >= p.overbought:
        return Vote.of(name, -1, 0.5 + 0.5 * (rsi - p.overbought) / p.full_strength_points)
    return Vote.abstain(name)
