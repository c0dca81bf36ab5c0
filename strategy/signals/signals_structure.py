"""Vote signals on market structure and flow: swing failures, EMA pinch, CVD, fair value gaps,
volume-profile point of control, order-book imbalance.

Each signal is a pure function `(bars, params) -> Vote` over the candle window that ends with the
candle that just closed (index -1, called t below). A window shorter than `params.lookback` or
holding NaN where a signal needs numbers makes it abstain. Exact definitions: docs/strategies.md.
"""

from __future__ import annotations

import numpy as np

from strategy.signals.bars import Bars, excess_strength
from strategy.signals.params import (
    BookImbalanceParams,
    CvdParams,
    EmaPinchParams,
    FairValueGapParams,
    PocParams,
    SwingFailureParams,
)
from strategy.signals.votes import Vote


def swing_failure(bars: Bars, p: SwingFailureParams) -> Vote:
    """Vote against a candle that sweeps the window's swing high (low) and closes back inside."""
    name = "swing_failure"
    if len(bars) < p.lookback:
        return Vote.abstain(name)
    swing_high = float(bars.high[-1 - p.swing_window:-1].max())
    swing_low = float(bars.low[-1 - p.swing_window:-1].min())
    h, l, c = bars.high[-1], bars.low[-1], bars.close[-1]
    span = h - l
    bearish = h > swing_high and c < swing_high
    bullish = l < swing_low and c > swing_low
    if bearish == bullish or not span > 0:  # neither, or an outside candle failing both ways
        return Vote.abstain(name)
    if bearish:
        return Vote.of(name, -1, 0.5 + 0.5 * (swing_high - c) / span)
    return Vote.of(name, 1, 0.5 + 0.5 * (c - swing_low) / span)


def ema_pinch(bars: Bars, p: EmaPinchParams) -> Vote:
    """Vote with the first candle on which a fast and a slow EMA, recently pinched, spread apart."""
    name = "ema_pinch"
    if len(bars) < p.lookback:
        return Vote.abstain(name)
    fast = bars.ema(p.fast)
    gap = fast - bars.ema(p.slow)
    atr = bars.atr(p.atr_period)
    recent_gaps = gap[-1 - p.pinch_window:]
    if not np.isfinite(recent_gaps).all() or not (atr[-2] > 0 and atr[-1] > 0):
        return Vote.abstain(name)
    pinched = np.abs(recent_gaps[:-1]).min() <= p.pinch_atr * atr[-2]
    released_now = abs(gap[-1]) >= p.release_atr * atr[-1]
    released_before = abs(gap[-2]) >= p.release_atr * atr[-2]
    if not pinched or not released_now or released_before:
        return Vote.abstain(name)
    direction = 1 if gap[-1] > 0 else -1
    if (bars.close[-1] - fast[-1]) * direction <= 0:
        return Vote.abstain(name)
    return Vote.of(name, direction, excess_strength(abs(gap[-1]) / (p.release_atr * atr[-1])))


def cvd(bars: Bars, p: CvdParams) -> Vote:
    """Vote with taker flow (cumulative volume delta over the window) when price moved its way."""
    name = "cvd"
    if len(bars) < p.lookback:
        return Vote.abstain(name)
    buy = bars.buy_volume[-p.window:]
    volume = bars.volume[-p.window:]
    change = bars.close[-1] - bars.close[-1 - p.window]
    if not (np.isfinite(buy).all() and np.isfinite(volume).all() and np.isfinite(change)):
        return Vote.abstain(name)
    total = float(volume.sum())
    if total <= 0:
        return Vote.abstain(name)
    imbalance = (2.0 * float(buy.sum()) - total) / total  # sum(buy - sell) / sum(volume)
    ratio = abs(imbalance) / p.min_imbalance
    if ratio < 1.0 or imbalance * change <= 0:
        return Vote.abstain(name)
    return Vote.of(name, 1 if imbalance > 0 else -1, excess_strength(ratio))


def fair_value_gap(bars: Bars, p: FairValueGapParams) -> Vote:
    """Vote with the most recent fair value gap that price returns into for the first time."""
    name = "fair_value_gap"
    if len(bars) < p.lookback:
        return Vote.abstain(name)
    high, low, close = bars.high, bars.low, bars.close
    n = len(bars)
    t = n - 1
    atr = bars.atr(p.atr_period)[-1]
    if not atr > 0:
        return Vote.abstain(name)
    first = t - p.window  # gaps completed by candle i in [t - window, t - 2]
    i = np.arange(first, t - 1)
    bullish = low[i] > high[i - 2]
    bearish = high[i] < low[i - 2]
    for k in np.flatnonzero(bullish | bearish)[::-1]:  # most recent gap first
        j = int(i[k])
        if bullish[k]:
            bottom, top = high[j - 2], low[j]
            untouched = bool((low[j + 1:t] > top).all())
            big_enough = top - bottom >= p.min_gap_atr * atr
            if untouched and big_enough and low[t] <= top and close[t] >= bottom:
                return Vote.of(name, 1, 0.5 + 0.5 * (top - bottom) / atr)
        else:
            bottom, top = high[j], low[j - 2]
            untouched = bool((high[j + 1:t] < bottom).all())
            big_enough = top - bottom >= p.min_gap_atr * atr
            if untouched and big_enough and high[t] >= bottom and close[t] <= top:
                return Vote.of(name, -1, 0.5 + 0.5 * (top - bottom) / atr)
    return Vote.abstain(name)


def volume_poc(bars: Bars, p: PocParams) -> Vote:
    """Vote toward the volume profile's point of control when the close is far from it."""
    name = "poc"
    if len(bars) < p.lookback:
        return Vote.abstain(name)
    poc = point_of_control(bars, p.window, p.bins)
    atr = bars.atr(p.atr_period)[-1]
    if not (np.isfinite(poc) and atr > 0):
        return Vote.abstain(name)
    z = (bars.close[-1] - poc) / atr
    if abs(z) < p.distance_atr:
        return Vote.abstain(name)
    return Vote.of(name, -1 if z > 0 else 1, excess_strength(abs(z) / p.distance_atr))


def point_of_control(bars: Bars, window: int, bins: int) -> float:
    """Return the centre of the price bin holding the most volume over the last `window` candles.

    Bins split [min low, max high] of the window into `bins` equal parts; each candle's volume
    goes to the bin of its VWAP (typical price without one); ties go to the lowest bin.
    """
    lo = float(bars.low[-window:].min())
    hi = float(bars.high[-window:].max())
    price, volume = bars.volume_weights(window)
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo and volume.sum() > 0):
        return float("nan")
    width = (hi - lo) / bins
    index = np.clip(np.floor((price - lo) / width), 0, bins - 1).astype(np.int64)
    profile = np.bincount(index, weights=volume, minlength=bins)
    return lo + (int(np.argmax(profile)) + 0.5) * width


def book_imbalance(bars: Bars, p: BookImbalanceParams) -> Vote:
    """Vote with the side holding more depth within 100 bp of mid, averaged over the window."""
    name = "book_imbalance"
    if len(bars) < p.lookback:
        return Vote.abstain(name)
    bids = bars.bid_depth[-p.window:]
    asks = bars.ask_depth[-p.window:]
    total = bids + asks
    if not (np.isfinite(total).all() and (total > 0).all()):
        return Vote.abstain(name)
    imbalance = float(np.mean((bids - asks) / total))
    ratio = abs(imbalance) / p.min_imbalance
    if ratio < 1.0:
        return Vote.abstain(name)
    return Vote.of(name, 1 if imbalance > 0 else -1, excess_strength(ratio))
