"""Models: training, walk-forward evaluation, MLflow tracking, sweeps, bundles and scoring.

Public API (see docs/models.md):

* config: ModelsConfig (embed as `models`), TrainConfig, LightGBMParams, WalkForwardConfig,
  SweepConfig; labels are strategy.labels.LabelsConfig (embed as `labels`)
* data: build_dataset(candles, feature_set, label) -> LabelledData; purged_split
* training: train_model(data, TrainConfig) -> TrainedModel; walk_forward(data, TrainConfig)
* threshold: choose_threshold / simulate_trades (profit net of fees)
* bundles: write_bundle, read_bundle(path, plan) -> Bundle, BundleError
* scoring: FastScorer (LightGBM C API single-row path), LiveModel, load_live_model,
  load_coin_models, combine_scores, score_coin
* commands: run_train, list_models, format_runs, promote (commands.py), run_sweep (sweep.py)
"""

from strategy.models.bundle import Bundle, BundleError, read_bundle, write_bundle
from strategy.models.config import (
    LightGBMParams,
    ModelsConfig,
    SweepConfig,
    SweepSpace,
    TrainConfig,
    WalkForwardConfig,
)
from strategy.models.dataset import LabelledData, Split, build_dataset, purged_split
from strategy.models.profit import (
    ThresholdChoice,
    TradeOutcomes,
    TradeStats,
    choose_threshold,
    simulate_trades,
    trade_outcomes,
)
from strategy.models.score import (
    CoinScore,
    LiveModel,
    combine_scores,
    live_bundle_dir,
    load_coin_models,
    load_live_model,
    score_coin,
)
from strategy.models.scorer import Contribution, Explanation, FastScorer, ScorerError
from strategy.models.train import TrainedModel, TrainingError, train_model
from strategy.models.walkforward import WalkForwardResult, WalkForwardStep, walk_forward

__all__ = [
    "Bundle",
    "BundleError",
    "CoinScore",
    "Contribution",
    "Explanation",
    "FastScorer",
    "LabelledData",
    "LightGBMParams",
    "LiveModel",
    "ModelsConfig",
    "ScorerError",
    "Split",
    "SweepConfig",
    "SweepSpace",
    "ThresholdChoice",
    "TradeOutcomes",
    "TradeStats",
    "TrainConfig",
    "TrainedModel",
    "TrainingError",
    "WalkForwardConfig",
    "WalkForwardResult",
    "WalkForwardStep",
    "build_dataset",
    "choose_threshold",
    "combine_scores",
    "live_bundle_dir",
    "load_coin_models",
    "load_live_model",
    "purged_split",
    "read_bundle",
    "score_coin",
    "simulate_trades",
    "trade_outcomes",
    "train_model",
    "walk_forward",
    "write_bundle",
]
