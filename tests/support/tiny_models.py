"""Small LightGBM models and a small second feature set, for tests of bundles and live models.

The models are real (lgb.train on random rows) and deterministic: the same arguments give the
same model text. Import as `from tests.support.tiny_models import ...`.
"""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np

from strategy.features import FeatureSetSpec


def stats_feature_set(name: str) -> FeatureSetSpec:
    """Return a one-generator per-second set (log-return mean, std, slope over 5 and 20 rows)."""
    return FeatureSetSpec.model_validate(
        {
            "name": name,
            "frequency": "second",
            "generators": [
                {"kind": "stats", "columns": ["close"], "transform": "log_return",
                 "windows": [5, 20], "stats": ["mean", "std", "slope"]},
            ],
        }
    )  # fmt: skip


def train_tiny_model(
    n_features: int,
    *,
    seed: int,
    rows: int,
    leaves: int,
    rounds: int,
    label_column: int = 0,
    nan_share: float = 0.0,
    **params: Any,
) -> str:
    """Return the model text of a binary LightGBM model whose label follows one column plus noise.

    nan_share > 0 blanks that share of the values (NaN-aware decision types in the trees).
    """
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(rows, n_features))
    if nan_share:
        data[rng.random(data.shape) < nan_share] = np.nan
    labels = (np.nan_to_num(data[:, label_column]) + rng.normal(size=rows) > 0).astype(np.float64)
    options = {"objective": "binary", "num_leaves": leaves, "min_data_in_leaf": 10, "verbose": -1,
               "num_threads": 1, "deterministic": True, **params}  # fmt: skip
    return lgb.train(options, lgb.Dataset(data, labels), num_boost_round=rounds).model_to_string()
