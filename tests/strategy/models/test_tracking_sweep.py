"""MLflow listing and promotion, and an Optuna sweep whose trials are MLflow runs."""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd
import pytest
from models_helpers import FAST_TRAIN, SMALL_FEATURES

from strategy.labels import ForwardLabel
from strategy.models import BundleError, ModelsConfig, SweepConfig, SweepSpace, read_bundle
from strategy.models.commands import format_runs, list_models, promote, run_train
from strategy.models.sweep import apply_trial, run_sweep

UP = ForwardLabel(direction="up", horizon=30, threshold_pct=0.4)
DOWN = ForwardLabel(direction="down", horizon=30, threshold_pct=0.4)


@pytest.fixture(scope="module")
def week(fil_candles: pd.DataFrame) -> pd.DataFrame:
    return fil_candles.iloc[: 6 * 1440]


def test_runs_are_listed_by_metric_and_promoted(week: pd.DataFrame, tmp_path: Path) -> None:
    models = ModelsConfig(
        dir=tmp_path / "models", train=FAST_TRAIN.model_copy(update={"baseline": False})
    )
    reports = [
        run_train(week, symbol="filusdt", feature_set=SMALL_FEATURES, label=label, models=models)
        for label in (UP, DOWN)
    ]
    runs = list_models(models, metric="val_roc_auc")
    aucs = [r.metrics["val_roc_auc"] for r in runs]
    assert aucs == sorted(aucs, reverse=True) and len(runs) == 2
    assert {r.run_id for r in runs} == {r.run_id for r in reports}
    assert [r.label for r in list_models(models, label=DOWN.label)] == [DOWN.label]
    assert list_models(models, symbol="BTCUSDT") == []
    table = format_runs(runs, "val_roc_auc")
    assert reports[0].run_id in table and "FILUSDT" in table

    first = promote(reports[0].run_id, models)
    assert first == models.dir / "FILUSDT" / UP.label
    assert read_bundle(first).manifest["mlflow_run_id"] == reports[0].run_id
    # Promoting again replaces the live bundle whole; the previous one is kept aside.
    again = promote(reports[0].run_id, models)
    assert again == first and (models.dir / "FILUSDT" / f".{UP.label}.previous").is_dir()
    with pytest.raises(Exception, match="not found|No such|does not exist|RESOURCE_DOES_NOT_EXIST"):
        promote("0" * 32, models)
    (first / "model.txt").write_text("tampered")
    with pytest.raises(BundleError, match="checksum mismatch: model.txt"):
        read_bundle(first)


def test_trial_values_land_in_the_definitions() -> None:
    spec, label, train = apply_trial(
        {
            "label.threshold_pct": 0.7,
            "lightgbm.num_leaves": 9,
            "features.generators.4.windows": [10, 30],
            "train.validation_fraction": 0.3,
        },
        SMALL_FEATURES,
        UP,
        FAST_TRAIN,
    )
    assert label.threshold_pct == 0.7 and label.horizon == UP.horizon
    assert train.lightgbm.num_leaves == 9 and train.validation_fraction == 0.3
    assert spec.generators[4].windows == (10, 30)
    with pytest.raises(KeyError, match="must start with"):
        apply_trial({"model.x": 1}, SMALL_FEATURES, UP, FAST_TRAIN)


def test_sweep_trials_are_mlflow_runs_in_a_shared_study(week: pd.DataFrame, tmp_path: Path) -> None:
    sweep = SweepConfig(
        trials=2,
        study="fil-up",
        objective="val_roc_auc",
        space={
            "label.threshold_pct": SweepSpace(low=0.3, high=0.6),
            "lightgbm.num_leaves": SweepSpace(low=4, high=16, integer=True),
            "features.generators.4.windows": SweepSpace(choices=([15, 60], [10, 30])),
        },
    )
    models = ModelsConfig(
        dir=tmp_path / "models",
        train=FAST_TRAIN.model_copy(update={"baseline": False}),
        sweep=sweep,
    )
    first = run_sweep(week, symbol="FILUSDT", feature_set=SMALL_FEATURES, label=UP, models=models)
    # A second worker (here: the same machine) joins the same study through the same storage.
    second = run_sweep(week, symbol="FILUSDT", feature_set=SMALL_FEATURES, label=UP, models=models)
    study = optuna.load_study(study_name="fil-up", storage=second.storage)
    assert len(study.trials) == 4
    trial_runs = list_models(models, kind="sweep-trial", metric="val_roc_auc")
    assert len(trial_runs) == 4
    assert {r.tags["mlflow.parentRunId"] for r in trial_runs} == {
        first.parent_run_id,
        second.parent_run_id,
    }
    assert {t.user_attrs["run_id"] for t in study.trials} == {r.run_id for r in trial_runs}
    best_value = max(r.metrics["val_roc_auc"] for r in trial_runs)
    assert second.best_value == best_value
    assert second.best_run_id in {
        r.run_id for r in trial_runs if r.metrics["val_roc_auc"] == best_value
    }
    assert len({str(t.params) for t in study.trials}) == 4  # the second worker drew new values
