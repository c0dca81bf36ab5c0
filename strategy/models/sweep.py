"""`tickloop sweep`: an Optuna search over feature windows, label parameters and LightGBM.

Each trial rewrites the base definitions at the dotted paths of `models.sweep.space`
(`label.threshold_pct`, `lightgbm.num_leaves`, `features.generators.1.windows`,
`train.validation_fraction`), trains through `run_train` (so every trial is a full MLflow run,
nested under one sweep run per worker) and reports the run's `objective` metric.

Storage is SQLite by default (`<models.dir>/optuna.db`). Given a PostgreSQL URL, every machine
running the same command with the same `--study` joins one study: Optuna's RDB storage hands
out trials across processes and machines (its distributed mode), and all runs land in the same
MLflow store when `--tracking-uri` points at a shared server.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import optuna
import pandas as pd

from strategy.features import FeatureSetSpec
from strategy.labels import LabelSpec, parse_label
from strategy.models.config import ModelsConfig, SweepSpace, TrainConfig
from strategy.models.dataset import build_dataset
from strategy.models.train import TrainingError


@dataclass(frozen=True)
class SweepReport:
    """The outcome of a sweep (this worker's view of the shared study)."""

    study: str
    storage: str
    best_value: float | None
    best_params: dict[str, Any]
    best_run_id: str | None
    trials_run: int
    parent_run_id: str


def suggest(trial: optuna.Trial, path: str, space: SweepSpace) -> Any:
    """Draw one value for a parameter path from its space."""
    if space.choices is not None:
        # Optuna's categorical choices must be scalars: lists (windows) travel as JSON text.
        encoded = [json.dumps(c) for c in space.choices]
        return json.loads(trial.suggest_categorical(path, encoded))
    assert space.low is not None and space.high is not None
    if space.integer:
        return trial.suggest_int(path, int(space.low), int(space.high), log=space.log)
    return trial.suggest_float(path, space.low, space.high, log=space.log)


def set_path(tree: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path (list indices as numbers) inside nested dicts and lists."""
    keys = path.split(".")
    node: Any = tree
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        if last not in node:
            raise KeyError(f"sweep path {path!r}: no {last!r} in {sorted(node)}")
        node[last] = value


def apply_trial(
    values: dict[str, Any], feature_set: FeatureSetSpec, label: LabelSpec, train: TrainConfig
) -> tuple[FeatureSetSpec, LabelSpec, TrainConfig]:
    """Return the definitions with the trial's values applied (re-validated)."""
    tree = {
        "features": feature_set.model_dump(mode="json"),
        "label": label.model_dump(mode="json"),
        "lightgbm": train.lightgbm.model_dump(mode="json"),
        "train": train.model_dump(mode="json", exclude={"lightgbm"}),
    }
    for path, value in values.items():
        head = path.split(".")[0]
        if head not in tree:
            raise KeyError(
                f"sweep path {path!r} must start with features, label, lightgbm or train"
            )
        set_path(tree, path, value)
    new_label = parse_label(tree["label"])
    new_train = TrainConfig.model_validate({**tree["train"], "lightgbm": tree["lightgbm"]})
    return FeatureSetSpec.model_validate(tree["features"]), new_label, new_train


def run_sweep(
    candles: pd.DataFrame,
    *,
    symbol: str,
    feature_set: FeatureSetSpec,
    label: LabelSpec,
    models: ModelsConfig,
    trials: int | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    tracking_uri: str | None = None,
) -> SweepReport:
    """Run this worker's share of trials of a (possibly shared) study; return the best so far."""
    from strategy.models.commands import run_train
    from strategy.models.tracking import Tracker

    settings = models.sweep
    storage = storage or settings.storage or f"sqlite:///{(models.dir / 'optuna.db').resolve()}"
    study_name = study_name or settings.study
    models.dir.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        direction=settings.direction,
        load_if_exists=True,
    )
    # Each worker joining the study draws its own random start-up trials.
    seed = None if settings.seed is None else settings.seed + len(study.trials)
    study.sampler = optuna.samplers.TPESampler(seed=seed)
    tracker = Tracker(tracking_uri or models.resolved_tracking_uri(), models.experiment)
    parent = tracker.start(
        f"sweep-{study_name}",
        {"kind": "sweep", "study": study_name, "symbol": symbol.upper(), "label": label.label},
    )
    tracker.log(
        parent,
        params={
            "space": {k: v.model_dump() for k, v in settings.space.items()},
            "objective": settings.objective,
            "storage": _redacted(storage),
        },
    )

    def objective(trial: optuna.Trial) -> float:
        values = {path: suggest(trial, path, space) for path, space in settings.space.items()}
        spec, trial_label, train = apply_trial(values, feature_set, label, models.train)
        trial_models = models.model_copy(update={"train": train})
        try:
            data = build_dataset(candles, spec, trial_label)
            report = run_train(
                candles,
                symbol=symbol,
                feature_set=spec,
                label=trial_label,
                models=trial_models,
                tracking_uri=tracking_uri,
                run_name=f"{study_name}-trial-{trial.number}",
                extra_tags={"kind": "sweep-trial", "study": study_name, "trial": str(trial.number)},
                parent_run_id=parent,
                data=data,
            )
        except TrainingError as exc:
            trial.set_user_attr("skipped", str(exc))
            raise optuna.TrialPruned(str(exc)) from exc
        trial.set_user_attr("run_id", report.run_id)
        value = report.metrics.get(settings.objective, math.nan)
        return value if math.isfinite(value) else math.nan

    try:
        study.optimize(objective, n_trials=trials or settings.trials)
    finally:
        tracker.finish(parent)
    completed = [
        t
        for t in study.trials
        if t.state == optuna.trial.TrialState.COMPLETE
        and t.value is not None
        and math.isfinite(t.value)
    ]
    sign = 1.0 if settings.direction == "maximize" else -1.0
    best = max(completed, key=lambda t: sign * float(t.value or 0.0), default=None)
    return SweepReport(
        study=study_name,
        storage=_redacted(storage),
        best_value=None if best is None else best.value,
        best_params={} if best is None else dict(best.params),
        best_run_id=None if best is None else best.user_attrs.get("run_id"),
        trials_run=trials or settings.trials,
        parent_run_id=parent,
    )


def _redacted(url: str) -> str:
    # A PostgreSQL URL may carry a password; it never goes to logs or MLflow.
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
