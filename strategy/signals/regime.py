"""Regime detection on one-minute candles: trend, flat or volatile.

With ATR and ADX computed over the candle window (Wilder, TA-Lib):

* `atr_ratio = ATR_t / mean(ATR over the last atr_baseline candles, t included)`: how the
  current true range compares with its recent normal;
* volatile when `atr_ratio >= volatile_atr_ratio` (a range expansion, whatever its direction);
* otherwise trend when `ADX_t >= trend_adx` (directional movement dominates);
* otherwise flat.

Volatility is tested first because ADX lags a shock by several candles and would call the first
candles of a crash a trend. A window too short for either indicator gives None (warm-up).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from strategy.signals.bars import Bars
from strategy.signals.params import RegimeParams
from strategy.signals.votes import Regime


@dataclass(frozen=True, slots=True)
class RegimeReading:
    """The regime of the candle that just closed and the two numbers that decided it."""

    regime: Regime
    adx: float
    atr_ratio: float


def detect_regime(bars: Bars, p: RegimeParams) -> RegimeReading | None:
    """Classify the last candle of `bars`; None while the window is shorter than the look-back."""
    if len(bars) < p.lookback:
        return None
    atr = bars.atr(p.atr_period)[-p.atr_baseline:]
    adx = float(bars.adx(p.adx_period)[-1])
    baseline = float(np.mean(atr))
    if not (np.isfinite(baseline) and baseline > 0 and np.isfinite(adx)):
        return None
    ratio = float(atr[-1]) / baseline
    if ratio >= p.volatile_atr_ratio:
        return RegimeReading(Regime.VOLATILE, adx, ratio)
    if adx >= p.trend_adx:
        return RegimeReading(Regime.TREND, adx, ratio)
    return RegimeReading(Regime.FLAT, adx, ratio)
