"""A month of real one-minute klines: the full `all` preset plus book and stats, stream == batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from features_frames import candles_from_klines

from strategy.features import FeatureSetSpec, StreamingFeatures, check_parity, compute_batch

FULL_MINUTE = {
    "frequency": "minute",
    "generators": [
        {"kind": "talib", "preset": "all"},
        {"kind": "book", "flow_window": 5},
        {"kind": "stats", "columns": ["close", "vwap", "volume"], "windows": [15, 60, 240]},
    ],
}


@pytest.mark.slow
def test_full_minute_set_on_a_month_of_filusdt(fil_month: pd.DataFrame) -> None:
    assert len(fil_month) == 31 * 24 * 60
    report = check_parity(fil_month, FeatureSetSpec.model_validate(FULL_MINUTE))
    assert report.ok, report.summary()
    assert report.max_rel_error == 0.0
    assert report.columns_compared == 233 + 3 + 3 * 3 * 8
    assert report.rows_compared == len(fil_month) - report.warmup_rows + 1


def test_spot_ohlcv_history_without_trade_counts(shared_data: Path) -> None:
    raw = pd.read_csv(
        shared_data / "klines" / "spot-1m-ohlcv" / "2024_BTCUSDT_1m.csv.gz", nrows=3000
    )
    candles = pd.DataFrame({c: raw[c] for c in ("open", "high", "low", "close", "volume")}).assign(
        vwap=np.nan,
        trades=np.nan,
        buy_volume=np.nan,
        bid_depth_100bp=np.nan,
        ask_depth_100bp=np.nan,
    )
    spec = FeatureSetSpec.model_validate(FULL_MINUTE)
    report = check_parity(candles, spec)
    assert report.ok, report.summary()
    features = compute_batch(candles, spec)
    assert features["flow_trade_intensity_5"].isna().all()
    assert features["rsi"].iloc[100:].notna().all()


def test_streaming_started_later_differs_for_ema_but_not_for_sma(fil_month: pd.DataFrame) -> None:
    """Why streaming must start where batch starts: EMA remembers the whole history."""
    spec = FeatureSetSpec.model_validate(
        {
            "frequency": "minute",
            "generators": [
                {"kind": "talib", "name": "EMA", "params": {"timeperiod": 30}},
                {"kind": "talib", "name": "SMA", "params": {"timeperiod": 30}},
            ],
        }
    )
    frame = fil_month.iloc[:400]
    batch = compute_batch(frame, spec)
    late = StreamingFeatures(spec)
    for row in frame.iloc[100:].to_dict("records"):
        vector = late.update(row)
    assert vector is not None
    ema_late, sma_late = vector
    assert sma_late == pytest.approx(batch["sma"].iloc[-1], rel=1e-12)
    assert ema_late != batch["ema"].iloc[-1]
    assert ema_late == pytest.approx(batch["ema"].iloc[-1], rel=1e-6)  # ... but it converges


def test_candles_helper_matches_the_archive(shared_data: Path) -> None:
    candles = candles_from_klines(shared_data / "klines" / "usdm-1m" / "LINKUSDT-1m-2023-02.csv.gz")
    assert (np.diff(candles["ts"]) == 60_000).all()
    assert (candles["buy_volume"] <= candles["volume"]).all()
