"""Custom generators end to end: config -> batch -> streaming -> parity, and contract errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from strategy.features import (
    FeaturesConfig,
    FeatureSetSpec,
    StreamingFeatures,
    check_parity,
    compute_batch,
)
from strategy.features.custom import CustomFunctionError


def momentum_set(window: int = 5, **extra: object) -> FeatureSetSpec:
    config = FeaturesConfig.model_validate(
        {
            "sets": [
                {
                    "frequency": "second",
                    "generators": [
                        {"kind": "book", "features": ["spread_bp"]},
                        {
                            "kind": "custom",
                            "function": "features_custom_helpers:momentum",
                            "params": {"window": window},
                            **extra,
                        },
                    ],
                }
            ]
        }
    )
    return config.sets[0]


def test_custom_columns_values_and_lookback(rows_synthetic: pd.DataFrame) -> None:
    spec = momentum_set(5)
    out = compute_batch(rows_synthetic.iloc[:50], spec)
    assert list(out.columns) == ["book_spread_bp", "momentum_5", "volume_max_5"]
    close, volume = rows_synthetic["close"].to_numpy(), rows_synthetic["volume"].to_numpy()
    for row in (5, 17, 49):
        assert out["momentum_5"].iloc[row] == pytest.approx(
            close[row] / close[row - 5] - 1.0, rel=1e-12
        )
        assert out["volume_max_5"].iloc[row] == max(volume[row - 5 : row + 1])
    assert out["momentum_5"].iloc[:5].isna().all()
    streaming = StreamingFeatures(spec)
    assert streaming.warmup_rows == 6


def test_custom_streaming_equals_batch(rows_synthetic: pd.DataFrame) -> None:
    report = check_parity(rows_synthetic.iloc[:600], momentum_set(12))
    assert report.ok, report.summary()
    assert report.max_rel_error == 0.0


def test_custom_inputs_subset_is_what_the_function_sees(rows_synthetic: pd.DataFrame) -> None:
    spec = momentum_set(3, inputs=["close", "volume"])
    frame = rows_synthetic[["close", "volume", "bid", "ask"]].iloc[:100]  # no other columns needed
    report = check_parity(frame, spec)
    assert report.ok, report.summary()


def test_function_returning_other_columns_is_reported(rows_synthetic: pd.DataFrame) -> None:
    spec = FeatureSetSpec.model_validate(
        {
            "frequency": "second",
            "generators": [{"kind": "custom", "function": "features_custom_helpers:wrong_columns"}],
        }
    )
    with pytest.raises(
        CustomFunctionError, match=r"returned columns \['other'\], declared \['declared'\]"
    ):
        compute_batch(rows_synthetic.iloc[:10], spec)
    with pytest.raises(CustomFunctionError, match="returned columns"):
        StreamingFeatures(spec).update(rows_synthetic.iloc[0].to_dict())


def test_config_overrides_the_declared_lookback(rows_synthetic: pd.DataFrame) -> None:
    spec = momentum_set(4, lookback=10)
    assert StreamingFeatures(spec).warmup_rows == 11
    assert np.isfinite(compute_batch(rows_synthetic.iloc[:20], spec)["momentum_4"].iloc[4])
