"""The candle window the vote signals read, with the indicators they share computed once.

`Bars` holds the last `n` one-minute candles as float64 arrays (oldest first, index -1 = the
candle that just closed) and memoises the TA-Lib indicators several signals use (ATR, EMA, RSI,
ADX), so twelve signals on one candle compute each indicator once. Every indicator is computed
over exactly this window, so the same window gives the same values live and in a backtest
(Wilder and EMA smoothing are seeded at the window's first candle: keep the window length fixed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import talib

from strategy.signals.context import WindowSource

BAR_COLUMNS = (
    "open", "high", "low", "close", "vwap", "volume", "buy_volume", "bid_depth_100bp",
    "ask_depth_100bp",
)


class Bars:
    """A window of one-minute candles (oldest first) and memoised indicators over it."""

    __slots__ = ("_memo", "ask_depth", "bid_depth", "buy_volume", "close", "high", "low", "open",
                 "volume", "vwap")

    def __init__(self, columns: Mapping[str, np.ndarray]) -> None:
        def col(name: str) -> np.ndarray:
            values = columns.get(name)
            if values is None:
                return np.full(len(columns["close"]), np.nan)
            return np.ascontiguousarray(values, dtype=np.float64)

        self.open = col("open")
        self.high = col("high")
        self.low = col("low")
        self.close = col("close")
        self.vwap = col("vwap")
        self.volume = col("volume")
        self.buy_volume = col("buy_volume")
        self.bid_depth = col("bid_depth_100bp")
        self.ask_depth = col("ask_depth_100bp")
        self._memo: dict[tuple[str, int], np.ndarray] = {}

    @classmethod
    def from_ring(cls, ring: WindowSource, n: int) -> Bars:
        """Take the last `n` candles of a candle ring (fewer while it holds fewer)."""
        return cls({name: ring.window(name, n) for name in BAR_COLUMNS})

    def __len__(self) -> int:
        return len(self.close)

    def _cached(self, key: tuple[str, int], compute: Callable[[], Any]) -> np.ndarray:
        values = self._memo.get(key)
        if values is None:
            values = np.asarray(compute(), dtype=np.float64)
            self._memo[key] = values
        return values

    def atr(self, period: int) -> np.ndarray:
        """Wilder's average true range (TA-Lib ATR); NaN for the first `period` candles."""
        return self._cached(("atr", period),
                            lambda: talib.ATR(self.high, self.low, self.close, timeperiod=period))

    def ema(self, period: int) -> np.ndarray:
        """Exponential moving average of close (TA-Lib EMA, seeded with the first SMA)."""
        return self._cached(("ema", period), lambda: talib.EMA(self.close, timeperiod=period))

    def rsi(self, period: int) -> np.ndarray:
        """Wilder's relative strength index of close (TA-Lib RSI), 0..100."""
        return self._cached(("rsi", period), lambda: talib.RSI(self.close, timeperiod=period))

    def adx(self, period: int) -> np.ndarray:
        """Wilder's average directional index (TA-Lib ADX), 0..100."""
        return self._cached(("adx", period),
                            lambda: talib.ADX(self.high, self.low, self.close, timeperiod=period))

    def volume_weights(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (price, volume) of the last n candles for volume weighting.

        The price of a candle's volume is its own VWAP; a candle without a VWAP (no trades, or
        a source without quote volume) uses (high + low + close) / 3 and an empty one weighs 0.
        """
        weights = self._memo.get(("volume_weights", 0))
        if weights is None:
            typical = (self.high + self.low + self.close) / 3.0
            price = np.where(np.isfinite(self.vwap), self.vwap, typical)
            volume = np.where(np.isfinite(self.volume), self.volume, 0.0)
            weights = np.stack((price, volume))
            self._memo[("volume_weights", 0)] = weights
        return weights[0, -n:], weights[1, -n:]


def rolling_vwap(bars: Bars, n: int) -> tuple[float, float]:
    """Return the VWAP of the last n candles and the volume-weighted std of prices around it.

    VWAP = sum(p_i v_i) / sum(v_i); sigma = sqrt(sum(v_i (p_i - VWAP)^2) / sum(v_i)), with p_i
    the candle's VWAP. NaN when the window holds no volume.
    """
    price, volume = bars.volume_weights(n)
    total = volume.sum()
    if not total > 0:
        return np.nan, np.nan
    vwap = float((price * volume).sum() / total)
    sigma = float(np.sqrt((volume * (price - vwap) ** 2).sum() / total))
    return vwap, sigma


def excess_strength(ratio: float) -> float:
    """Map how far a trigger is exceeded (ratio >= 1 at the trigger) to a strength in [0.5, 1].

    strength = min(1, ratio - 0.5): 0.5 right at the trigger, 1 at 1.5 times it.
    """
    return float(min(1.0, max(0.5, ratio - 0.5)))
