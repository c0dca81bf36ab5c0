"""Streaming equals batch on per-second rows; warm-up gating; priming from history."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from strategy.features import (
    FeaturesConfig,
    FeatureSetSpec,
    StreamingFeatures,
    check_parity,
    compile_feature_set,
    compute_batch,
)

SECOND_RICH = {
    "frequency": "second",
    "generators": [
        {"kind": "book"},
        {"kind": "book", "flow_window": 30, "features": ["taker_buy_share", "trade_intensity"]},
        {"kind": "talib", "name": "EMA", "windows": [10, 120]},
        {"kind": "talib", "name": "MACD"},
        {"kind": "talib", "name": "RSI", "inputs": {"price": "vwap"}},
        {"kind": "talib", "name": "ATR"},
        {"kind": "talib", "name": "KAMA", "inputs": {"price": "bid"}},  # NaN stretches
        {"kind": "talib", "name": "OBV"},
        {"kind": "stats", "columns": ["close", "vwap"], "windows": [20, 120]},
        {"kind": "stats", "columns": ["bid_depth_100bp"], "transform": "level", "windows": [15]},
        {"kind": "stats", "columns": ["volume"], "transform": "diff", "windows": [10]},
    ],
}


def assert_exact(report: Any) -> None:
    assert report.ok, report.summary()
    assert report.max_rel_error == 0.0, report.summary()


def test_default_second_set_on_synthetic_rows(rows_synthetic: pd.DataFrame) -> None:
    spec = FeaturesConfig().get("second")
    report = check_parity(rows_synthetic, spec)
    assert_exact(report)
    plan = compile_feature_set(spec)
    assert report.columns_compared == len(plan.columns)
    assert report.first_warm_row == plan.warmup_rows - 1
    assert report.rows_compared == len(rows_synthetic) - plan.warmup_rows + 1


def test_rich_second_set_with_invalid_book_stretches(rows_synthetic: pd.DataFrame) -> None:
    assert rows_synthetic["bid"].isna().sum() > 7  # leading and mid-frame NaNs in a TA-Lib input
    spec = FeatureSetSpec.model_validate(SECOND_RICH)
    assert_exact(check_parity(rows_synthetic, spec))


def test_all_preset_book_and_stats_on_rows_folded_from_real_trades(
    rows_aggtrades: pd.DataFrame,
) -> None:
    spec = FeatureSetSpec.model_validate(
        {
            "frequency": "second",
            "generators": [
                {"kind": "talib", "preset": "all"},
                {"kind": "book", "flow_window": 60},
                {"kind": "stats", "columns": ["close", "vwap"], "windows": [60, 300]},
            ],
        }
    )
    frame = rows_aggtrades.iloc[:6000]
    report = check_parity(frame, spec)
    assert_exact(report)
    assert report.columns_compared == 233 + 11 + 32


def test_parity_check_catches_a_function_with_hidden_history(rows_synthetic: pd.DataFrame) -> None:
    spec = FeatureSetSpec.model_validate(
        {
            "frequency": "second",
            "generators": [
                {"kind": "talib", "name": "SMA", "params": {"timeperiod": 5}},
                {"kind": "custom", "function": "features_custom_helpers:expanding_mean"},
            ],
        }
    )
    report = check_parity(rows_synthetic.iloc[:200], spec)
    assert not report.ok
    assert [m.column for m in report.mismatches] == ["close_expanding_mean"]
    mismatch = report.mismatches[0]
    expanding = rows_synthetic["close"].iloc[:200].expanding().mean()
    assert mismatch.batch_value == expanding.iloc[mismatch.first_row]
    assert "PARITY FAILED" in report.summary() and "close_expanding_mean" in report.summary()


def test_not_warm_until_warmup_rows(rows_synthetic: pd.DataFrame) -> None:
    spec = FeatureSetSpec.model_validate(
        {
            "frequency": "second",
            "generators": [
                {"kind": "talib", "name": "RSI", "params": {"timeperiod": 20}},
                {"kind": "stats", "columns": ["close"], "windows": [30]},
            ],
        }
    )
    streaming = StreamingFeatures(spec)
    # RSI(20) emits from its 21st bar; 30 log returns need 31 closes.
    assert streaming.warmup_rows == 31
    records = rows_synthetic.to_dict("records")
    for row in records[:30]:
        assert streaming.update(row) is None
        assert not streaming.warm
    vector = streaming.update(records[30])
    assert streaming.warm and vector is not None
    assert vector.shape == (len(streaming.columns),)
    batch = compute_batch(rows_synthetic.iloc[:31], spec)
    np.testing.assert_array_equal(vector, batch.iloc[30].to_numpy())
    assert not np.isnan(batch.iloc[30]).any() and np.isnan(batch.iloc[29]["close_logret_std_30"])


def test_warm_waits_for_a_talib_input_that_starts_nan(rows_synthetic: pd.DataFrame) -> None:
    leading_nan = int(rows_synthetic["bid"].isna().to_numpy().argmin())
    assert leading_nan == 7
    spec = FeatureSetSpec.model_validate(
        {
            "frequency": "second",
            "generators": [
                {
                    "kind": "talib",
                    "name": "SMA",
                    "inputs": {"price": "bid"},
                    "params": {"timeperiod": 10},
                }
            ],
        }
    )
    streaming = StreamingFeatures(spec)
    assert streaming.warmup_rows == 10
    results = [streaming.update(row) for row in rows_synthetic.iloc[:30].to_dict("records")]
    first = next(i for i, v in enumerate(results) if v is not None)
    assert first == leading_nan + 9
    assert results[first][0] == pytest.approx(rows_synthetic["bid"].iloc[7:17].mean(), rel=1e-12)


@pytest.mark.parametrize("split", [0, 5, 150, 2999])
def test_prime_then_update_equals_batch(rows_synthetic: pd.DataFrame, split: int) -> None:
    spec = FeatureSetSpec.model_validate(SECOND_RICH)
    frame = rows_synthetic.iloc[:1500] if split < 1500 else rows_synthetic
    batch = compute_batch(frame, spec).to_numpy()
    streaming = StreamingFeatures(spec)
    streaming.prime(frame.iloc[: split // 2])
    streaming.prime(frame.iloc[split // 2 : split])
    assert streaming.rows_seen == split
    vectors = [streaming.update(row) for row in frame.iloc[split:].to_dict("records")]
    compared = 0
    for position, vector in enumerate(vectors, start=split):
        if vector is not None:
            np.testing.assert_array_equal(vector, batch[position])
            compared += 1
    assert compared == len(frame) - max(split, compile_feature_set(spec).warmup_rows - 1)


class TinyRing:
    """Just enough of a ColumnRing for update_from_ring: the newest value of each column."""

    def __init__(self) -> None:
        self._last: dict[str, Any] = {}

    def append(self, row: dict[str, Any]) -> None:
        self._last = dict(row)

    def last(self, column: str) -> Any:
        return self._last[column]


def test_update_from_ring_equals_update(rows_synthetic: pd.DataFrame) -> None:
    spec = FeaturesConfig().get("second")
    direct, from_ring, ring = StreamingFeatures(spec), StreamingFeatures(spec), TinyRing()
    for row in rows_synthetic.iloc[:400].to_dict("records"):
        ring.append(row)
        a, b = direct.update(row), from_ring.update_from_ring(ring)
        assert (a is None and b is None) or np.array_equal(a, b, equal_nan=True)
    assert direct.warm and from_ring.warm


def test_mavp_by_name_with_a_periods_column(rows_synthetic: pd.DataFrame) -> None:
    spec = FeatureSetSpec.model_validate(
        {
            "frequency": "second",
            "generators": [
                {
                    "kind": "talib",
                    "name": "MAVP",
                    "inputs": {"periods": "trades"},
                    "params": {"minperiod": 2, "maxperiod": 10},
                }
            ],
        }
    )
    assert compile_feature_set(spec).columns == ("mavp_trades_maxperiod10",)
    assert_exact(check_parity(rows_synthetic.iloc[:800], spec))
