"""Training sets: feature rows and labels side by side, split in time with a purge gap.

Features come from the feature engine (batch, past rows only), labels and trade outcomes from
the label generator (future rows only); they stay in separate arrays, so a label can never be
read as a feature. Rows before the feature set is warm are dropped.

The purge gap: a training row's label looks `horizon` bars ahead, so the last `horizon` rows
before the validation block are left out, or their labels would be read from validation bars.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from strategy.features import FeaturePlan, FeatureSetSpec, compute_batch
from strategy.features.plan import as_plan
from strategy.labels import LabelSpec
from strategy.models.profit import TradeOutcomes, trade_outcomes


@dataclass(frozen=True)
class LabelledData:
    """Warm feature rows with their label and trade outcome, oldest first."""

    features: np.ndarray  # (rows, columns) float64, in `feature_names` order
    labels: np.ndarray  # (rows,) 1.0 / 0.0 / NaN (undecided)
    ts_ms: np.ndarray  # (rows,) bar open time
    feature_names: tuple[str, ...]
    outcomes: TradeOutcomes
    plan: FeaturePlan
    label: LabelSpec

    def __len__(self) -> int:
        return len(self.labels)

    def rows_between(self, start_ms: int, end_ms: int) -> np.ndarray:
        """Return the row positions with start_ms <= ts < end_ms."""
        lo, hi = np.searchsorted(self.ts_ms, [start_ms, end_ms], side="left")
        return np.arange(lo, hi)


def build_dataset(
    candles: pd.DataFrame, feature_set: FeatureSetSpec | FeaturePlan, label: LabelSpec
) -> LabelledData:
    """Compute features and the label over contiguous bars; keep the warm rows."""
    plan = as_plan(feature_set)
    candles = candles.reset_index(drop=True)
    features = compute_batch(candles, plan).to_numpy(dtype=np.float64)
    labels = label.compute(candles)
    close, high, low = (candles[c].to_numpy(dtype=np.float64) for c in ("close", "high", "low"))
    outcomes = trade_outcomes(close, high, low, label.trade_rule())
    first_warm = plan.warmup_rows - 1
    rows = np.arange(first_warm, len(candles)) if len(candles) > first_warm else np.arange(0)
    return LabelledData(
        features=np.ascontiguousarray(features[rows]),
        labels=labels[rows],
        ts_ms=candles["ts"].to_numpy(dtype=np.int64)[rows],
        feature_names=plan.columns,
        outcomes=outcomes.take(rows),
        plan=plan,
        label=label,
    )


@dataclass(frozen=True, slots=True)
class Split:
    """Row positions for training and validation; `purged` rows sit between them, unused."""

    train: np.ndarray
    validation: np.ndarray
    purged: int


def purged_split(rows: np.ndarray, validation_fraction: float, purge_rows: int) -> Split:
    """Split time-ordered row positions: train first, then `purge_rows` dropped, then validation."""
    n = len(rows)
    val_start = round(n * (1.0 - validation_fraction))
    train_end = max(val_start - purge_rows, 0)
    return Split(rows[:train_end], rows[val_start:], val_start - train_end)


def labelled(data: LabelledData, rows: np.ndarray) -> np.ndarray:
    """Keep the positions whose label is decided (not NaN)."""
    return rows[~np.isnan(data.labels[rows])]
