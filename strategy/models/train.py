"""Train one coin's classifier for one label: LightGBM, a logistic baseline, metrics, threshold.

Time order is kept: the first rows train, the last `validation_fraction` validate, with a purge
gap of the label horizon between them. The threshold is chosen on validation to maximise the
simulated trading profit net of fees (strategy.models.profit), not accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from strategy.models.config import LightGBMParams, TrainConfig
from strategy.models.dataset import LabelledData, Split, labelled, purged_split
from strategy.models.metrics import classification_metrics, precision_recall
from strategy.models.profit import ThresholdChoice, choose_threshold, simulate_trades


class TrainingError(ValueError):
    """The data cannot train a model (too few rows, one class only); the message says which."""


@dataclass
class TrainedModel:
    """A trained booster with its threshold, validation metrics and what they were computed on."""

    booster: lgb.Booster
    threshold: float
    metrics: dict[str, float]
    split: Split
    validation_rows: np.ndarray  # labelled validation positions
    validation_scores: np.ndarray
    baseline_scores: np.ndarray | None
    choice: ThresholdChoice
    train_range_ms: tuple[int, int]
    validation_range_ms: tuple[int, int]
    params: dict[str, object] = field(default_factory=dict)

    def curves(self, data: LabelledData) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Return the validation precision/recall curves, LightGBM and baseline."""
        y = data.labels[self.validation_rows]
        curves = {"lightgbm": precision_recall(y, self.validation_scores)}
        if self.baseline_scores is not None:
            curves["logistic baseline"] = precision_recall(y, self.baseline_scores)
        return curves


def fit_lightgbm(
    features: np.ndarray, labels: np.ndarray, names: tuple[str, ...], params: LightGBMParams
) -> lgb.Booster:
    """Fit a binary LightGBM classifier on the given rows."""
    dataset = lgb.Dataset(
        features, label=labels, feature_name=list(_safe_names(names)), free_raw_data=True
    )
    return lgb.train(params.booster_params(), dataset, num_boost_round=params.num_boost_round)


def predict(booster: lgb.Booster, features: np.ndarray) -> np.ndarray:
    """Return the booster's probabilities for a block of rows."""
    return np.asarray(booster.predict(features), dtype=np.float64)


def fit_baseline(features: np.ndarray, labels: np.ndarray) -> Pipeline:
    """Fit the logistic-regression baseline (median-imputed, standardised features)."""
    model = make_pipeline(
        SimpleImputer(strategy="median", keep_empty_features=True),
        StandardScaler(),
        LogisticRegression(max_iter=500),
    )
    finite = np.where(np.isfinite(features), features, np.nan)
    return model.fit(finite, labels)


def predict_baseline(model: Pipeline, features: np.ndarray) -> np.ndarray:
    """Return the baseline's probability of the positive class."""
    finite = np.where(np.isfinite(features), features, np.nan)
    return model.predict_proba(finite)[:, 1]


def train_model(
    data: LabelledData, config: TrainConfig, rows: np.ndarray | None = None
) -> TrainedModel:
    """Train on the first part of `rows` (default: all), validate on the last, pick a threshold."""
    rows = np.arange(len(data)) if rows is None else rows
    purge = data.label.horizon_rows if config.purge_rows is None else config.purge_rows
    split = purged_split(rows, config.validation_fraction, purge)
    train_rows, val_rows = labelled(data, split.train), labelled(data, split.validation)
    for name, part in (("training", train_rows), ("validation", val_rows)):
        if len(part) < 50:
            raise TrainingError(f"{name} block has {len(part)} labelled rows; need at least 50")
        if len(np.unique(data.labels[part])) < 2:
            raise TrainingError(f"{name} block holds one class only ({data.label.label})")
    booster = fit_lightgbm(
        data.features[train_rows], data.labels[train_rows], data.feature_names, config.lightgbm
    )
    val_scores = predict(booster, data.features[val_rows])
    y_val = data.labels[val_rows]
    metrics = classification_metrics(y_val, val_scores, config.recalls, prefix="val_")
    metrics.update(
        classification_metrics(
            data.labels[train_rows], predict(booster, data.features[train_rows]), (), "train_"
        )
    )
    outcomes = data.outcomes.take(split.validation)
    positions = np.searchsorted(split.validation, val_rows)
    all_scores = np.full(len(split.validation), -np.inf)
    all_scores[positions] = val_scores
    choice = choose_threshold(
        all_scores, outcomes, config.fee_pct, config.threshold_candidates, config.min_trades
    )
    metrics.update(
        val_profit_pct=choice.stats.profit_pct,
        val_trades=float(choice.stats.trades),
        val_win_rate=choice.stats.win_rate,
        val_mean_net_pct=choice.stats.mean_net_pct,
        threshold=choice.threshold,
    )
    baseline_scores = None
    if config.baseline:
        baseline = fit_baseline(data.features[train_rows], data.labels[train_rows])
        baseline_scores = predict_baseline(baseline, data.features[val_rows])
        metrics.update(classification_metrics(y_val, baseline_scores, config.recalls, "baseline_"))
        base_scores = np.full(len(split.validation), -np.inf)
        base_scores[positions] = baseline_scores
        base_choice = choose_threshold(
            base_scores, outcomes, config.fee_pct, config.threshold_candidates, config.min_trades
        )
        metrics["baseline_val_profit_pct"] = base_choice.stats.profit_pct
    return TrainedModel(
        booster=booster,
        threshold=choice.threshold,
        metrics=metrics,
        split=split,
        validation_rows=val_rows,
        validation_scores=val_scores,
        baseline_scores=baseline_scores,
        choice=choice,
        train_range_ms=_range(data, train_rows),
        validation_range_ms=_range(data, val_rows),
        params=config.lightgbm.model_dump(),
    )


def profit_at(
    scores: np.ndarray, threshold: float, data: LabelledData, rows: np.ndarray, fee_pct: float
) -> float:
    """Simulated net profit (%) of trading `rows` (contiguous) at a threshold."""
    return simulate_trades(scores, threshold, data.outcomes.take(rows), fee_pct).profit_pct


def _range(data: LabelledData, rows: np.ndarray) -> tuple[int, int]:
    return (int(data.ts_ms[rows[0]]), int(data.ts_ms[rows[-1]])) if len(rows) else (0, 0)


def _safe_names(names: tuple[str, ...]) -> list[str]:
    # LightGBM rejects some JSON-special characters in feature names; bundles keep the real names.
    table = str.maketrans({c: "_" for c in '[]{}:,"'})
    return [name.translate(table) for name in names]
