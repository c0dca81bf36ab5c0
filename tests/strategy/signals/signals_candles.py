"""Hand-built candles for the strategy tests, and reference indicators written independently.

The references follow the textbook definitions (Wilder's ATR and RSI seeded with a simple mean,
EMA seeded with a simple mean, as TA-Lib documents them) in plain Python loops, so the tests
never take an expected value from the code under test.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.fold import new_candle_ring
from engine.ring import ColumnRing
from strategy.signals.bars import Bars

NAN = float("nan")


def candles(
    closes: Sequence[float],
    *,
    opens: Sequence[float] | None = None,
    highs: Sequence[float] | None = None,
    lows: Sequence[float] | None = None,
    wick: float = 0.5,
    volume: float | Sequence[float] = 1.0,
    vwaps: Sequence[float] | None = None,
    buy_share: float | Sequence[float] = 0.5,
    bid_depth: float | Sequence[float] = NAN,
    ask_depth: float | Sequence[float] = NAN,
) -> dict[str, np.ndarray]:
    """Build candle columns; by default open = previous close and high/low = body +- wick."""
    close = np.asarray(closes, dtype=float)
    n = len(close)
    open_ = np.asarray(opens, dtype=float) if opens is not None else np.r_[close[0], close[:-1]]
    high = np.asarray(highs, dtype=float) if highs is not None else np.maximum(open_, close) + wick
    low = np.asarray(lows, dtype=float) if lows is not None else np.minimum(open_, close) - wick
    vol = np.broadcast_to(np.asarray(volume, dtype=float), (n,)).copy()
    return {
        "open": open_,
        "high": high,
        "low": low,
        "close": close,
        "vwap": np.asarray(vwaps, dtype=float) if vwaps is not None else close.copy(),
        "volume": vol,
        "buy_volume": vol * np.broadcast_to(np.asarray(buy_share, dtype=float), (n,)),
        "bid_depth_100bp": np.broadcast_to(np.asarray(bid_depth, dtype=float), (n,)).copy(),
        "ask_depth_100bp": np.broadcast_to(np.asarray(ask_depth, dtype=float), (n,)).copy(),
    }


def bars(columns: dict[str, np.ndarray]) -> Bars:
    return Bars(columns)


def concat(*parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def ring_of(columns: dict[str, np.ndarray], start_ts_ms: int = 1_700_000_000_000) -> ColumnRing:
    """Put candle columns into a candle ring (every CANDLE_COLUMNS field filled)."""
    n = len(columns["close"])
    ring = new_candle_ring(max(n, 1))
    for i in range(n):
        append_candle(ring, columns, i, start_ts_ms + 60_000 * i)
    return ring


def append_candle(ring: ColumnRing, columns: dict[str, np.ndarray], i: int, ts_ms: int) -> None:
    volume = columns["volume"][i]
    ring.append(
        ts=ts_ms, open=columns["open"][i], high=columns["high"][i], low=columns["low"][i],
        close=columns["close"][i], vwap=columns["vwap"][i], volume=volume,
        quote_volume=volume * columns["vwap"][i], trades=1, buy_volume=columns["buy_volume"][i],
        seconds=60, bid_depth_100bp=columns["bid_depth_100bp"][i],
        ask_depth_100bp=columns["ask_depth_100bp"][i],
    )


def wilder_atr(
    high: Sequence[float], low: Sequence[float], close: Sequence[float], n: int
) -> list[float]:
    """ATR: true ranges from the second candle, first value = mean of n of them, then Wilder."""
    tr = [max(high[i] - low[i], abs(high[i] - close[i - 1]), abs(low[i] - close[i - 1]))
          for i in range(1, len(close))]
    out = [NAN] * len(close)
    if len(tr) < n:
        return out
    atr = sum(tr[:n]) / n
    out[n] = atr
    for i in range(n, len(tr)):
        atr = (atr * (n - 1) + tr[i]) / n
        out[i + 1] = atr
    return out


def wilder_rsi(close: Sequence[float], n: int) -> list[float]:
    """RSI: mean gain and loss of the first n changes, then Wilder smoothing."""
    changes = [close[i] - close[i - 1] for i in range(1, len(close))]
    out = [NAN] * len(close)
    if len(changes) < n:
        return out
    gain = sum(max(c, 0.0) for c in changes[:n]) / n
    loss = sum(max(-c, 0.0) for c in changes[:n]) / n

    def rsi(g: float, l: float) -> float:
        return 100.0 * g / (g + l) if g + l > 0 else 0.0

    out[n] = rsi(gain, loss)
    for i in range(n, len(changes)):
        gain = (gain * (n - 1) + max(changes[i], 0.0)) / n
        loss = (loss * (n - 1) + max(-changes[i], 0.0)) / n
        out[i + 1] = rsi(gain, loss)
    return out


def ema(values: Sequence[float], n: int) -> list[float]:
    """EMA with k = 2 / (n + 1), first value = mean of the first n values."""
    out = [NAN] * len(values)
    if len(values) < n:
        return out
    k = 2.0 / (n + 1)
    value = sum(values[:n]) / n
    out[n - 1] = value
    for i in range(n, len(values)):
        value = values[i] * k + value * (1 - k)
        out[i] = value
    return out
