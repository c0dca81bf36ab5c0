"""No look-ahead: appending future rows never changes an earlier batch feature value."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from strategy.features import FeaturesConfig, FeatureSetSpec, compute_batch


def earlier_rows_unchanged(frame: pd.DataFrame, spec: FeatureSetSpec, n: int, k: int) -> bool:
    short = compute_batch(frame.iloc[:n], spec).to_numpy()
    long = compute_batch(frame.iloc[: n + k], spec).to_numpy()[:n]
    return bool(np.array_equal(short, long, equal_nan=True))


@pytest.mark.parametrize(("n", "k"), [(150, 1), (700, 300), (1203, 977)])
def test_default_minute_set_on_klines(fil_month: pd.DataFrame, n: int, k: int) -> None:
    assert earlier_rows_unchanged(fil_month, FeaturesConfig().get("minute"), n, k)


@pytest.mark.parametrize(("n", "k"), [(301, 1), (1000, 500)])
def test_second_set_with_custom_and_talib(rows_synthetic: pd.DataFrame, n: int, k: int) -> None:
    spec = FeatureSetSpec.model_validate(
        {
            "frequency": "second",
            "generators": [
                {"kind": "book", "flow_window": 20},
                {"kind": "stats", "columns": ["close", "bid"], "windows": [30, 300]},
                {"kind": "talib", "preset": "all"},
                {
                    "kind": "custom",
                    "function": "features_custom_helpers:momentum",
                    "params": {"window": 4},
                },
            ],
        }
    )
    assert earlier_rows_unchanged(rows_synthetic, spec, n, k)


def test_the_property_catches_a_function_that_peeks_ahead(rows_synthetic: pd.DataFrame) -> None:
    spec = FeatureSetSpec.model_validate(
        {
            "frequency": "second",
            "generators": [{"kind": "custom", "function": "features_custom_helpers:peeks_ahead"}],
        }
    )
    assert not earlier_rows_unchanged(rows_synthetic, spec, 100, 1)
