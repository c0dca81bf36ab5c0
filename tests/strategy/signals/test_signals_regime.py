"""Regime detection on constructed trending, flat and volatile candle series."""

from __future__ import annotations

import numpy as np
import pytest
from signals_candles import bars, candles, wilder_atr

from strategy.signals.params import RegimeParams
from strategy.signals.regime import detect_regime
from strategy.signals.votes import Regime

RP = RegimeParams()  # ADX 14 >= 25: trend; ATR / mean ATR over 100 >= 1.5: volatile


def _trending(n: int = 200, step: float = 0.6) -> dict[str, np.ndarray]:
    """Two steps forward, one bigger step back: a clear but imperfect trend (ADX about 50)."""
    closes = [100.0]
    for i in range(1, n):
        closes.append(closes[-1] + (step if i % 3 else -step * 4 / 3))
    return candles(closes, wick=0.3)


def _flat(n: int = 200) -> dict[str, np.ndarray]:
    return candles([100.0 + 0.4 * ((i % 4) in (1, 2)) for i in range(n)], wick=0.3)


def test_a_steady_climb_is_a_trend() -> None:
    reading = detect_regime(bars(_trending()), RP)
    assert reading is not None
    assert reading.regime is Regime.TREND
    assert reading.adx >= 25.0


def test_a_steady_fall_is_a_trend_too() -> None:
    reading = detect_regime(bars(_trending(step=-0.6)), RP)
    assert reading is not None and reading.regime is Regime.TREND


def test_a_range_is_flat() -> None:
    reading = detect_regime(bars(_flat()), RP)
    assert reading is not None
    assert reading.regime is Regime.FLAT
    assert reading.adx < 25.0
    assert reading.atr_ratio < 1.5


def test_a_range_expansion_is_volatile_and_its_ratio_matches_wilder() -> None:
    data = _flat()
    for k in range(1, 4):  # three wide candles at the end, no direction
        data["high"][-k], data["low"][-k] = 104.0, 96.0
    atr = wilder_atr(data["high"], data["low"], data["close"], 14)
    expected_ratio = atr[-1] / np.mean(atr[-100:])
    reading = detect_regime(bars(data), RP)
    assert reading is not None
    assert reading.atr_ratio == pytest.approx(expected_ratio)
    assert expected_ratio >= 1.5
    assert reading.regime is Regime.VOLATILE


def test_volatility_wins_over_trend() -> None:
    data = _trending()
    data["high"][-1] = data["close"][-1] + 12.0  # a shock candle within a clear trend
    reading = detect_regime(bars(data), RP)
    assert reading is not None and reading.adx >= 25.0
    assert reading.regime is Regime.VOLATILE


def test_no_regime_during_warm_up() -> None:
    assert RP.lookback == 114
    assert detect_regime(bars(_trending(113)), RP) is None
    assert detect_regime(bars(_trending(114)), RP) is not None


def test_thresholds_come_from_params() -> None:
    reading = detect_regime(bars(_trending()), RP)
    assert reading is not None
    stricter = RegimeParams(trend_adx=min(99.0, reading.adx + 1.0))
    assert detect_regime(bars(_trending()), stricter).regime is Regime.FLAT  # type: ignore[union-attr]
