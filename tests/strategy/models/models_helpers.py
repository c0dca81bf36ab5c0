"""Shared definitions for the model tests: a small, fast feature set and training config."""

from __future__ import annotations

from strategy.features import FeatureSetSpec
from strategy.models import LightGBMParams, TrainConfig, WalkForwardConfig

SMALL_FEATURES = FeatureSetSpec.model_validate(
    {
        "name": "small",
        "frequency": "minute",
        "generators": [
            {"kind": "talib", "name": "RSI", "windows": [14, 30]},
            {"kind": "talib", "name": "NATR"},
            {"kind": "talib", "name": "MACD"},
            {"kind": "book", "features": ["taker_buy_share", "trade_intensity"], "flow_window": 15},
            {"kind": "stats", "columns": ["close"], "windows": [15, 60], "stats": ["std", "slope"]},
        ],
    }
)

FAST_TRAIN = TrainConfig(
    lightgbm=LightGBMParams(num_boost_round=30, num_leaves=15, min_data_in_leaf=50),
    walk_forward=WalkForwardConfig(retrain_days=2, min_train_days=5),
)
