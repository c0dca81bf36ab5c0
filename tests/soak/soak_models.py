"""A tiny real LightGBM bundle for the soak: trained on the tape it trades, tuned to trade often.

What it predicts does not matter; that the full engine keeps placing entries, protective orders
and exits all day does. The feature set is short (20 s of rows), so an engine restarted after a
kill is warm again within half a minute of market time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from engine.config import parse_config
from engine.replay import replay_tape
from strategy.features import FeatureSetSpec, compile_feature_set, compute_batch
from strategy.models import LightGBMParams, write_bundle
from strategy.models.train import fit_lightgbm

SOAK_SET = FeatureSetSpec.model_validate({
    "name": "soak", "frequency": "second",
    "generators": [{"kind": "stats", "columns": ["close"], "transform": "log_return",
                    "windows": [5, 20], "stats": ["mean", "std"]}],
})  # fmt: skip
HORIZON_S = 15

# Enter often, hold 90 s at most, stops and take-profits near the price (yet far enough to rest
# on the exchange): entries, OCO / algo protection, triggered stops, exits and cancels every hour.
SOAK_STRATEGY: dict[str, Any] = {
    "kind": "model",
    "entry": {"cooldown_s": 30},
    "exits": {"max_hold_s": 90, "stop_loss_pct": 0.15, "take_profits": [{"pct": 0.15}]},
}


def train_soak_bundle(tape: Path, models_dir: Path, symbol: str, enter_share: float = 0.5) -> float:
    """Train and promote a small model for symbol; return its threshold (the enter_share quantile)."""
    rows = replay_tape(tape, parse_config({}).fold).rows
    rows = rows[rows["symbol"] == symbol].reset_index(drop=True)
    plan = compile_feature_set(SOAK_SET)
    features = compute_batch(rows, plan).to_numpy(dtype=np.float64)
    close = rows["close"].to_numpy(dtype=np.float64)
    usable = np.arange(plan.warmup_rows - 1, len(rows) - HORIZON_S)
    labels = (np.roll(close, -HORIZON_S)[usable] > close[usable]).astype(np.float64)
    params = LightGBMParams(num_boost_round=10, num_leaves=6, min_data_in_leaf=10, num_threads=1)
    booster = fit_lightgbm(features[usable], labels, plan.columns, params)
    threshold = float(np.quantile(booster.predict(features[usable]), 1.0 - enter_share))
    write_bundle(
        models_dir / symbol / "up", booster.model_to_string(), symbol=symbol, plan=plan,
        label={"name": "up", "kind": "test", "side": 1, "horizon_rows": HORIZON_S},
        threshold=threshold, training={"rows": len(usable)}, metrics={},
    )  # fmt: skip
    return threshold
