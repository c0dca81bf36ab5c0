"""Input frame schemas the feature engine reads: per-second rows and one-minute candles.

They mirror the market-data layer's ring buffers (engine/fold.py). The feature engine only
needs the column names (for config validation) and treats every value as float64.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

Frequency = Literal["second", "minute"]

DEPTH_BANDS_BP: tuple[int, ...] = (30, 100, 300, 1000)

SECOND_COLUMNS: tuple[str, ...] = (
    "ts",
    "open",
    "high",
    "low",
    "close",
    "vwap",
    "volume",
    "quote_volume",
    "trades",
    "buy_volume",
    "sell_volume",
    "bid",
    "ask",
    *(f"bid_depth_{bp}bp" for bp in DEPTH_BANDS_BP),
    *(f"ask_depth_{bp}bp" for bp in DEPTH_BANDS_BP),
    "book_valid",
    "late_frames",
    "resyncs",
    "stale_ms",
)

MINUTE_COLUMNS: tuple[str, ...] = (
    "ts",
    "open",
    "high",
    "low",
    "close",
    "vwap",
    "volume",
    "quote_volume",
    "trades",
    "buy_volume",
    "seconds",
    "bid_depth_100bp",
    "ask_depth_100bp",
)

FRAME_COLUMNS: dict[str, tuple[str, ...]] = {"second": SECOND_COLUMNS, "minute": MINUTE_COLUMNS}

SECONDS_PER_ROW: dict[str, int] = {"second": 1, "minute": 60}

FREQUENCY_NOUN: dict[str, str] = {"second": "per-second rows", "minute": "one-minute candles"}


def depth_bands(frequency: str) -> tuple[int, ...]:
    """Return the depth bands (bp) that frames of this frequency carry on both sides."""
    columns = set(FRAME_COLUMNS[frequency])
    return tuple(
        bp
        for bp in DEPTH_BANDS_BP
        if f"bid_depth_{bp}bp" in columns and f"ask_depth_{bp}bp" in columns
    )


def infer_frequency(columns: Iterable[str]) -> Frequency:
    """Tell per-second rows from one-minute candles by their columns."""
    names = set(columns)
    if "seconds" in names and "bid" not in names:
        return "minute"
    if {"bid", "ask", "book_valid"} <= names:
        return "second"
    raise ValueError(
        "cannot tell the frame's frequency: expected the per-second row columns (bid, ask, "
        "book_valid, ...) or the one-minute candle columns (seconds, ...)"
    )
