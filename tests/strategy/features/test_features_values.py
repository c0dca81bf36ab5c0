"""Feature values against independent references (hand-computed or plain-Python loops)."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pandas as pd
import pytest

from strategy.features import FeatureSetSpec, compute_batch
from strategy.features.schema import SECOND_COLUMNS


def one_generator(generator: dict, frequency: str = "second") -> FeatureSetSpec:
    return FeatureSetSpec.model_validate({"frequency": frequency, "generators": [generator]})


def second_rows(**columns: list[float]) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    frame = pd.DataFrame({c: np.full(n, 1.0) for c in SECOND_COLUMNS})
    for name, values in columns.items():
        frame[name] = values
    return frame


def test_book_features_by_hand() -> None:
    frame = second_rows(
        bid=[100.0, 100.0, np.nan],
        ask=[100.02, 100.04, np.nan],
        bid_depth_30bp=[3.0, 0.0, np.nan],
        ask_depth_30bp=[1.0, 0.0, np.nan],
        bid_depth_100bp=[5.0, 2.0, 1.0],
        ask_depth_100bp=[5.0, 6.0, 1.0],
        bid_depth_300bp=[10.0, 8.0, 2.0],
        ask_depth_300bp=[10.0, 8.0, 2.0],
        bid_depth_1000bp=[20.0, 20.0, 4.0],
        ask_depth_1000bp=[30.0, 20.0, 4.0],
        volume=[4.0, 0.0, 2.0],
        buy_volume=[1.0, 0.0, 2.0],
        trades=[8, 0, 1],
    )
    out = compute_batch(frame, one_generator({"kind": "book"}))
    row = out.iloc[0]
    assert row["book_imbalance_30bp"] == pytest.approx(0.5)  # (3 - 1) / 4
    assert row["book_imbalance_100bp"] == 0.0
    assert row["book_imbalance_1000bp"] == pytest.approx(-0.2)  # (20 - 30) / 50
    assert row["book_depth_ratio_30_100bp"] == pytest.approx(0.4)  # 4 / 10
    assert row["book_depth_ratio_300_1000bp"] == pytest.approx(0.4)  # 20 / 50
    assert row["book_spread_bp"] == pytest.approx(0.02 / 100.01 * 1e4)
    # microprice = (100.02 * 3 + 100 * 1) / 4 = 100.015; mid 100.01
    assert row["book_microprice_offset_bp"] == pytest.approx(0.005 / 100.01 * 1e4)
    assert row["flow_taker_buy_share"] == pytest.approx(0.25)
    assert row["flow_trade_intensity"] == 8.0
    empty = out.iloc[1]
    assert math.isnan(empty["book_imbalance_30bp"]) and math.isnan(
        empty["book_microprice_offset_bp"]
    )
    assert math.isnan(empty["flow_taker_buy_share"]) and empty["flow_trade_intensity"] == 0.0
    invalid = out.iloc[2]
    assert math.isnan(invalid["book_spread_bp"]) and math.isnan(invalid["book_imbalance_30bp"])
    assert invalid["book_imbalance_100bp"] == 0.0


def test_flow_windows_and_minute_intensity() -> None:
    frame = second_rows(
        volume=[1.0, 3.0, 0.0, 4.0], buy_volume=[1.0, 0.0, 0.0, 2.0], trades=[1, 2, 0, 6]
    )
    out = compute_batch(
        frame,
        one_generator(
            {"kind": "book", "flow_window": 3, "features": ["taker_buy_share", "trade_intensity"]}
        ),
    )
    assert np.isnan(out["flow_taker_buy_share_3"].iloc[:2]).all()
    assert out["flow_taker_buy_share_3"].iloc[2] == pytest.approx(1 / 4)
    assert out["flow_taker_buy_share_3"].iloc[3] == pytest.approx(2 / 7)
    assert out["flow_trade_intensity_3"].iloc[3] == pytest.approx(8 / 3)
    candles = pd.DataFrame(
        {
            "trades": [120, 60],
            "volume": [1.0, 1.0],
            "buy_volume": [0.5, 1.0],
            "bid_depth_100bp": [1.0, 3.0],
            "ask_depth_100bp": [3.0, 1.0],
        }
    )
    out = compute_batch(candles, one_generator({"kind": "book"}, "minute"))
    assert list(out["flow_trade_intensity"]) == [2.0, 1.0]  # trades per second
    assert list(out["book_imbalance_100bp"]) == [-0.5, 0.5]


def reference_stats(window: list[float]) -> dict[str, float]:
    n = len(window)
    mean = statistics.fmean(window)
    dev = [x - mean for x in window]
    m2 = sum(d * d for d in dev) / n
    m3 = sum(d**3 for d in dev) / n
    m4 = sum(d**4 for d in dev) / n
    slope = float(np.polyfit(np.arange(n), window, 1)[0])
    runs, longest = 0, 0
    for d in dev:
        runs = runs + 1 if d < 0 else 0
        longest = max(longest, runs)
    return {
        "mean": mean,
        "std": statistics.pstdev(window),
        "skew": m3 / m2**1.5,
        "kurt": m4 / m2**2 - 3.0,
        "slope": slope,
        "area_above_mean": sum(max(d, 0.0) for d in dev) / n,
        "argmax_pos": window.index(max(window)) / (n - 1),
        "longest_run_below_mean": float(longest),
    }


def test_stats_against_plain_python() -> None:
    rng = np.random.default_rng(8)
    prices = 20.0 * np.exp(np.cumsum(rng.normal(0, 0.01, 80)))
    frame = pd.DataFrame({"close": prices})
    out = compute_batch(frame, one_generator({"kind": "stats", "windows": [7, 25]}, "minute"))
    log_returns = [math.log(prices[i] / prices[i - 1]) for i in range(1, len(prices))]
    for window in (7, 25):
        for row in (window, 40, 79):
            expected = reference_stats(log_returns[row - window : row])
            for stat, value in expected.items():
                got = out[f"close_logret_{stat}_{window}"].iloc[row]
                assert got == pytest.approx(value, rel=1e-9, abs=1e-15), (stat, window, row)
        assert out[f"close_logret_mean_{window}"].iloc[:window].isna().all()


def test_stats_of_a_flat_window_and_a_window_with_nan() -> None:
    values = [0.1] * 6 + [0.2, np.nan, 0.3, 0.3, 0.3, 0.3, 0.3]
    frame = pd.DataFrame({"close": values})
    out = compute_batch(
        frame, one_generator({"kind": "stats", "transform": "level", "windows": [5]}, "minute")
    )
    flat = out.iloc[5]
    assert flat["close_mean_5"] == pytest.approx(0.1)
    assert flat["close_std_5"] == 0.0 and flat["close_slope_5"] == 0.0
    assert math.isnan(flat["close_skew_5"]) and math.isnan(flat["close_kurt_5"])
    assert flat["close_area_above_mean_5"] == 0.0 and flat["close_longest_run_below_mean_5"] == 0.0
    assert flat["close_argmax_pos_5"] == 0.0  # ties go to the oldest row
    assert out.iloc[7:12].isna().all().all()  # every window holding the NaN
    assert out.iloc[12]["close_std_5"] == 0.0


def test_diff_transform_and_talib_forward_fill() -> None:
    frame = pd.DataFrame({"close": [1.0, 4.0, 9.0, 16.0, np.nan, 36.0]})
    out = compute_batch(
        frame,
        one_generator(
            {"kind": "stats", "transform": "diff", "windows": [3], "stats": ["mean"]}, "minute"
        ),
    )
    assert out["close_diff_mean_3"].iloc[3] == pytest.approx((3 + 5 + 7) / 3)
    sma = compute_batch(
        frame,
        one_generator({"kind": "talib", "name": "SMA", "params": {"timeperiod": 2}}, "minute"),
    )
    # TA-Lib sees the NaN close replaced by the last valid one (16).
    assert list(sma["sma_timeperiod2"].iloc[1:]) == [2.5, 6.5, 12.5, 16.0, 26.0]
