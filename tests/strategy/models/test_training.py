"""Dataset, purge gap, training metrics and threshold, walk-forward, on real FILUSDT klines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from models_helpers import FAST_TRAIN, SMALL_FEATURES
from sklearn.metrics import roc_auc_score

from strategy.features import compile_feature_set, compute_batch
from strategy.labels import ForwardLabel
from strategy.models import (
    LabelledData,
    TrainingError,
    build_dataset,
    purged_split,
    train_model,
    walk_forward,
)

LABEL = ForwardLabel(direction="up", horizon=30, threshold_pct=0.4)


@pytest.fixture(scope="module")
def data(fil_candles: pd.DataFrame) -> LabelledData:
    return build_dataset(fil_candles, SMALL_FEATURES, LABEL)


def test_dataset_holds_warm_features_and_the_label_separately(
    fil_candles: pd.DataFrame, data: LabelledData
) -> None:
    plan = compile_feature_set(SMALL_FEATURES)
    features = compute_batch(fil_candles, plan).to_numpy()
    first = plan.warmup_rows - 1
    assert len(data) == len(fil_candles) - first
    np.testing.assert_array_equal(data.features, features[first:])
    np.testing.assert_array_equal(data.labels, LABEL.compute(fil_candles)[first:])
    np.testing.assert_array_equal(data.ts_ms, fil_candles["ts"].to_numpy()[first:])
    assert not np.isnan(data.features[0]).all()


def test_purged_split_leaves_the_label_horizon_out() -> None:
    rows = np.arange(1000)
    split = purged_split(rows, 0.25, 30)
    assert split.validation[0] == 750 and split.validation[-1] == 999
    assert split.train[-1] == 719 and split.purged == 30
    # The last training label (719 .. 749) ends before the first validation bar (750).
    assert split.train[-1] + 30 < split.validation[0]


def reference_profit(
    scores: np.ndarray, threshold: float, exit_row: np.ndarray, gross: np.ndarray, fee: float
) -> tuple[int, float]:
    trades, total, free_from = 0, 0.0, 0
    for t in range(len(scores)):
        if t >= free_from and scores[t] >= threshold and exit_row[t] >= 0:
            trades += 1
            total += gross[t] - 2 * fee
            free_from = exit_row[t]
    return trades, total


def test_train_model_metrics_and_threshold_check_out(data: LabelledData) -> None:
    trained = train_model(data, FAST_TRAIN)
    split = trained.split
    assert split.purged == LABEL.horizon
    y = data.labels[trained.validation_rows]
    scores = trained.booster.predict(data.features[trained.validation_rows])
    np.testing.assert_array_equal(scores, trained.validation_scores)
    assert trained.metrics["val_roc_auc"] == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    assert trained.metrics["val_base_rate"] == pytest.approx(y.mean())
    for key in ("baseline_roc_auc", "val_precision_at_recall_0.1", "baseline_val_profit_pct"):
        assert np.isfinite(trained.metrics[key])
    # The chosen threshold's profit, replayed by a plain loop over the validation block.
    block = split.validation
    all_scores = np.full(len(block), -np.inf)
    all_scores[np.searchsorted(block, trained.validation_rows)] = scores
    exit_row = np.where(
        data.outcomes.exit_row[block] >= 0, data.outcomes.exit_row[block] - block[0], -1
    )
    trades, profit = reference_profit(
        all_scores, trained.threshold, exit_row, data.outcomes.gross_pct[block], FAST_TRAIN.fee_pct
    )
    assert trades == trained.metrics["val_trades"]
    assert profit == pytest.approx(trained.metrics["val_profit_pct"], abs=1e-9)
    # No candidate threshold of the grid does better with enough trades.
    for candidate, cand_profit, cand_trades in zip(
        trained.choice.candidates, trained.choice.profits_pct, trained.choice.trades, strict=True
    ):
        if cand_trades >= FAST_TRAIN.min_trades:
            assert cand_profit <= max(profit, 0.0) + 1e-9, candidate


def test_a_label_with_one_class_cannot_train(fil_candles: pd.DataFrame) -> None:
    never = build_dataset(
        fil_candles.iloc[:4000], SMALL_FEATURES, ForwardLabel(threshold_pct=50, horizon=5)
    )
    with pytest.raises(TrainingError, match="one class"):
        train_model(never, FAST_TRAIN)


def test_walk_forward_scores_only_unseen_blocks(data: LabelledData) -> None:
    result = walk_forward(data, FAST_TRAIN)
    day = 86_400_000
    assert len(result.steps) == 5  # 14 days: first test block starts after 5 days, 2-day steps
    first_ms = int(data.ts_ms[0])
    for step in result.steps:
        assert step.skipped is None
        assert step.train_start_ms == first_ms  # expanding window
        # Training labels (horizon 30 bars) end before the block the step scores.
        assert step.train_end_ms + LABEL.horizon * 60_000 <= step.test_start_ms
        assert step.test_end_ms - step.test_start_ms <= 2 * day
    starts = [s.test_start_ms for s in result.steps]
    assert starts == list(range(first_ms + 5 * day, first_ms + 14 * day, 2 * day))[: len(starts)]
    assert np.array_equal(result.rows, np.arange(result.rows[0], len(data)))  # contiguous, once
    assert data.ts_ms[result.rows[0]] == first_ms + 5 * day
    assert {"wf_roc_auc", "wf_profit_pct", "wf_trades"} <= set(result.metrics)
    # The first step's scores are those of a model trained only on bars before its block.
    step = result.steps[0]
    window = data.rows_between(first_ms, step.test_start_ms)
    again = train_model(data, FAST_TRAIN, window[: len(window) - LABEL.horizon])
    block = data.rows_between(step.test_start_ms, step.test_end_ms)
    np.testing.assert_array_equal(
        result.scores[: len(block)], again.booster.predict(data.features[block])
    )
    assert result.thresholds[0] == again.threshold
