"""Raster merge: real per-second rows aggregate to the engine's own candles, real gaps are flagged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.config import FoldConfig
from engine.replay import replay_tape
from strategy.features.schema import MINUTE_COLUMNS
from strategy.models.merge import gap_report, klines_to_candles, merge_sources, source_frame

MINUTE = 60_000


def utc_ms(text: str) -> int:
    return int(pd.Timestamp(text, tz="UTC").value // 1_000_000)


def test_per_second_rows_aggregate_to_the_engines_candles(tapes: dict[str, Path]) -> None:
    replay = replay_tape(tapes["spot_btcusdt"], FoldConfig())
    rows = replay.rows.drop(columns=["symbol"])
    candles = replay.candles.drop(columns=["symbol"])
    merged = merge_sources({"rows": rows, "fold": candles})
    assert not merged["rows_missing"].any() and not merged["fold_missing"].any()
    for column in (
        "open",
        "high",
        "low",
        "close",
        "volume",
        "quote_volume",
        "trades",
        "buy_volume",
        "seconds",
        "bid_depth_100bp",
        "ask_depth_100bp",
    ):
        np.testing.assert_allclose(
            merged[f"rows_{column}"].to_numpy(dtype=float),
            merged[f"fold_{column}"].to_numpy(dtype=float),
            rtol=1e-12,
            err_msg=column,
        )
    np.testing.assert_allclose(merged["rows_vwap"], merged["fold_vwap"], rtol=1e-12)
    back = source_frame(merged, "fold")
    assert list(back.columns) == list(MINUTE_COLUMNS)


def test_spot_maintenance_windows_stay_visible_as_gaps(shared_data: Path) -> None:
    raw = pd.read_csv(shared_data / "klines" / "spot-1m-ohlcv" / "2021_BTCUSDT_1m.csv.gz")
    spot = raw.assign(
        ts=pd.to_datetime(raw["timestamp"], utc=True).dt.as_unit("ms").astype("int64")
    )
    spot = spot.drop(columns=["timestamp"])
    merged = merge_sources({"spot": spot})
    # Binance spot maintenance (PROVENANCE.md), minutes checked in the file by hand.
    assert gap_report(merged, "spot") == [
        (utc_ms("2021-04-20 02:00"), utc_ms("2021-04-20 04:30")),
        (utc_ms("2021-04-25 04:01"), utc_ms("2021-04-25 08:45")),
    ]
    assert len(merged) == (utc_ms("2021-04-30 03:34") - utc_ms("2021-03-26 03:00")) // MINUTE
    gap = merged[merged["spot_missing"]]
    assert gap["spot_close"].isna().all() and gap["spot_volume"].isna().all()  # nothing filled in


def test_sources_align_by_timestamp_with_prefixes() -> None:
    base = utc_ms("2024-01-01")
    klines = pd.DataFrame(
        {
            "open_time": base + MINUTE * np.array([0, 1, 2, 4]),
            "open": [1.0, 2, 3, 5],
            "high": [1.5, 2.5, 3.5, 5.5],
            "low": [0.5, 1.5, 2.5, 4.5],
            "close": [1.2, 2.2, 3.2, 5.2],
            "volume": [10.0, 0, 30, 50],
            "close_time": base + MINUTE * np.array([1, 2, 3, 5]) - 1,
            "quote_volume": [12.0, 0, 96, 260],
            "count": [3, 0, 5, 7],
            "taker_buy_volume": [4.0, 0, 10, 20],
            "taker_buy_quote_volume": [5.0, 0, 32, 104],
        }
    )
    seconds = pd.DataFrame(
        {
            "ts": base + MINUTE + 1000 * np.arange(0, 150, 30),
            "close": [7.0, 8, 9, 10, 11],
            "volume": [1.0, 1, 1, 1, 1],
            "quote_volume": [7.0, 8, 9, 10, 11],
        }
    )
    merged = merge_sources(
        {"usdm": klines, "rows": seconds}, start_ms=base, end_ms=base + 6 * MINUTE
    )
    assert merged["ts"].tolist() == [base + MINUTE * i for i in range(6)]
    assert merged["usdm_missing"].tolist() == [False, False, False, True, False, True]
    assert merged["rows_missing"].tolist() == [True, False, False, False, True, True]
    assert merged["usdm_close"].tolist()[:3] == [1.2, 2.2, 3.2] and np.isnan(
        merged["usdm_close"][3]
    )
    assert merged["usdm_vwap"].tolist()[:3] == [1.2, 2.2, 3.2]  # 12/10, no volume -> close, 96/30
    assert merged["usdm_trades"].tolist()[:3] == [3, 0, 5]
    assert merged["rows_close"][1] == 8.0 and merged["rows_volume"][1] == 2.0  # 0 s and 30 s
    assert merged["rows_close"][2] == 10.0 and merged["rows_volume"][2] == 2.0  # 60 s, 90 s
    assert merged["rows_vwap"][1] == 7.5
    with pytest.raises(ValueError, match="off the"):
        merge_sources(
            {"x": pd.DataFrame({"ts": [base + 5, base + MINUTE + 5], "close": [1.0, 2.0]})}
        )


def test_klines_to_candles_matches_the_feature_schema() -> None:
    klines = pd.DataFrame(
        {
            "open_time": [0, 60_000],
            "open": [1.0, 2.0],
            "high": [1.0, 2.0],
            "low": [1.0, 2.0],
            "close": [1.0, 2.0],
            "volume": [4.0, 0.0],
            "close_time": [59_999, 119_999],
            "quote_volume": [5.0, 0.0],
            "count": [2, 0],
            "taker_buy_volume": [1.0, 0.0],
            "taker_buy_quote_volume": [1.0, 0.0],
        }
    )
    candles = klines_to_candles(klines)
    assert list(candles.columns) == list(MINUTE_COLUMNS)
    assert candles["vwap"].tolist() == [1.25, 2.0]
    assert candles["seconds"].tolist() == [60, 60]
    assert candles["bid_depth_100bp"].isna().all()
