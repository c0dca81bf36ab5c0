"""Walk-forward evaluation: re-train every N days, score only the days after, as live would.

Step k trains on the bars before its test block (all of them, or the last `train_days`), with
the label horizon purged from the end so no training label reads a test bar; inside that
window the usual train / purge / validation split picks the threshold. The step's model and
threshold then score its test block, which no model has seen. The concatenated test blocks give
the out-of-sample metrics and the simulated profit net of fees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from strategy.models.config import TrainConfig
from strategy.models.dataset import LabelledData
from strategy.models.metrics import classification_metrics
from strategy.models.profit import NO_TRADE_THRESHOLD, simulate_trades
from strategy.models.train import TrainingError, predict, train_model

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class WalkForwardStep:
    """One re-training and the unseen block it scored."""

    train_start_ms: int
    train_end_ms: int  # exclusive: the test block start minus the purge gap
    test_start_ms: int
    test_end_ms: int
    threshold: float
    test_rows: int
    trades: int
    profit_pct: float
    skipped: str | None = None  # why no model was trained for this step


@dataclass(frozen=True)
class WalkForwardResult:
    """Out-of-sample scores over every test block, with the metrics they give."""

    steps: tuple[WalkForwardStep, ...]
    rows: np.ndarray  # dataset positions scored out of sample (contiguous)
    scores: np.ndarray  # NaN where the step had no model
    thresholds: np.ndarray  # the threshold in force at each scored row
    metrics: dict[str, float]


def walk_forward(
    data: LabelledData, config: TrainConfig, progress: bool = False
) -> WalkForwardResult:
    """Run the walk-forward evaluation over the whole dataset."""
    settings = config.walk_forward
    purge = data.label.horizon_rows if config.purge_rows is None else config.purge_rows
    first_ms, end_ms = int(data.ts_ms[0]), int(data.ts_ms[-1]) + 1
    step_ms = int(settings.retrain_days * DAY_MS)
    starts = list(range(first_ms + int(settings.min_train_days * DAY_MS), end_ms, step_ms))
    if not starts:
        raise TrainingError(
            f"the data spans {(end_ms - first_ms) / DAY_MS:.1f} days; walk-forward needs more "
            f"than min_train_days={settings.min_train_days}"
        )
    steps: list[WalkForwardStep] = []
    parts: list[tuple[np.ndarray, np.ndarray, float]] = []
    for test_start in tqdm(starts, desc="walk-forward", unit="step", disable=not progress):
        test_end = min(test_start + step_ms, end_ms)
        train_from = first_ms
        if settings.train_days is not None:
            train_from = max(first_ms, test_start - int(settings.train_days * DAY_MS))
        window = data.rows_between(train_from, test_start)
        train_rows = window[: max(len(window) - purge, 0)]
        test_rows = data.rows_between(test_start, test_end)
        if len(test_rows) == 0:
            continue
        train_end = int(data.ts_ms[train_rows[-1]]) + 1 if len(train_rows) else train_from
        try:
            trained = train_model(data, config, train_rows)
        except TrainingError as exc:
            parts.append((test_rows, np.full(len(test_rows), np.nan), NO_TRADE_THRESHOLD))
            steps.append(
                WalkForwardStep(
                    train_from,
                    train_end,
                    test_start,
                    test_end,
                    NO_TRADE_THRESHOLD,
                    len(test_rows),
                    0,
                    0.0,
                    skipped=str(exc),
                )
            )
            continue
        scores = predict(trained.booster, data.features[test_rows])
        stats = simulate_trades(
            scores, trained.threshold, data.outcomes.take(test_rows), config.fee_pct
        )
        parts.append((test_rows, scores, trained.threshold))
        steps.append(
            WalkForwardStep(
                train_from,
                train_end,
                test_start,
                test_end,
                trained.threshold,
                len(test_rows),
                stats.trades,
                stats.profit_pct,
            )
        )
    rows = np.concatenate([p[0] for p in parts])
    scores = np.concatenate([p[1] for p in parts])
    thresholds = np.concatenate([np.full(len(p[0]), p[2]) for p in parts])
    return WalkForwardResult(
        tuple(steps),
        rows,
        scores,
        thresholds,
        _metrics(data, config, rows, scores, thresholds, steps),
    )


def _metrics(
    data: LabelledData,
    config: TrainConfig,
    rows: np.ndarray,
    scores: np.ndarray,
    thresholds: np.ndarray,
    steps: list[WalkForwardStep],
) -> dict[str, float]:
    labels = data.labels[rows]
    known = ~np.isnan(labels) & ~np.isnan(scores)
    metrics = classification_metrics(labels[known], scores[known], config.recalls, prefix="wf_")
    tradeable = np.where(np.isnan(scores), -np.inf, scores)
    stats = simulate_trades(tradeable, thresholds, data.outcomes.take(rows), config.fee_pct)
    metrics.update(
        wf_profit_pct=stats.profit_pct,
        wf_trades=float(stats.trades),
        wf_win_rate=stats.win_rate,
        wf_mean_net_pct=stats.mean_net_pct,
        wf_steps=float(len(steps)),
        wf_steps_skipped=float(sum(s.skipped is not None for s in steps)),
        wf_days=float((data.ts_ms[rows[-1]] - data.ts_ms[rows[0]]) / DAY_MS) if len(rows) else 0.0,
    )
    return metrics
