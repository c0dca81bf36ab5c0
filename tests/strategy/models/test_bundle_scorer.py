"""Bundles (write, verify, refuse with a named reason), the fast scorer, explanations, scores."""

from __future__ import annotations

import json
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from models_helpers import FAST_TRAIN, SMALL_FEATURES

from strategy.features import FeatureSetSpec, compile_feature_set
from strategy.labels import ForwardLabel
from strategy.models import (
    BundleError,
    FastScorer,
    LabelledData,
    build_dataset,
    combine_scores,
    load_coin_models,
    load_live_model,
    read_bundle,
    score_coin,
    train_model,
    write_bundle,
)
from strategy.models.commands import label_manifest

UP = ForwardLabel(direction="up", horizon=30, threshold_pct=0.4)
DOWN = ForwardLabel(direction="down", horizon=30, threshold_pct=0.4)


@pytest.fixture(scope="module")
def data(fil_candles: pd.DataFrame) -> LabelledData:
    return build_dataset(fil_candles.iloc[: 5 * 1440], SMALL_FEATURES, UP)


@pytest.fixture(scope="module")
def booster(data: LabelledData) -> lgb.Booster:
    return train_model(data, FAST_TRAIN).booster


def make_bundle(
    path: Path, booster: lgb.Booster, label: ForwardLabel = UP, threshold: float = 0.6
) -> Path:
    write_bundle(
        path,
        booster.model_to_string(),
        symbol="FILUSDT",
        plan=compile_feature_set(SMALL_FEATURES),
        label=label_manifest(label),
        threshold=threshold,
        training={"train_start_ms": 1, "train_end_ms": 2},
        metrics={"val_roc_auc": 0.6},
    )
    return path


def test_bundle_round_trip_and_manifest(tmp_path: Path, booster: lgb.Booster) -> None:
    plan = compile_feature_set(SMALL_FEATURES)
    bundle = read_bundle(make_bundle(tmp_path / "b", booster), plan)
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert bundle.feature_names == plan.columns == tuple(manifest["feature_names"])
    assert bundle.feature_set_hash == plan.hash and bundle.warmup_rows == plan.warmup_rows
    assert bundle.threshold == 0.6 and bundle.side == 1 and bundle.label_name == UP.label
    assert manifest["label"]["definition"]["threshold_pct"] == 0.4
    assert manifest["libraries"]["lightgbm"] == lgb.__version__
    assert set(manifest) >= {"training", "metrics", "files", "manifest_sha256", "feature_set"}
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["manifest.json", "model.txt"]


def test_a_changed_model_file_is_refused(tmp_path: Path, booster: lgb.Booster) -> None:
    path = make_bundle(tmp_path / "b", booster)
    model = path / "model.txt"
    model.write_text(model.read_text().replace("shrinkage=", "shrinkage=0", 1))
    with pytest.raises(BundleError, match=r"^checksum mismatch: model.txt$"):
        read_bundle(path)


def test_a_changed_manifest_is_refused(tmp_path: Path, booster: lgb.Booster) -> None:
    path = make_bundle(tmp_path / "b", booster)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["threshold"] = 0.01
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"^checksum mismatch: manifest.json$"):
        read_bundle(path)


def test_other_features_are_refused_by_name(tmp_path: Path, booster: lgb.Booster) -> None:
    path = make_bundle(tmp_path / "b", booster)
    other = FeatureSetSpec.model_validate(
        {
            **SMALL_FEATURES.model_dump(),
            "generators": [
                *SMALL_FEATURES.model_dump()["generators"][:-1],
                {"kind": "stats", "windows": [16, 60], "stats": ["std", "slope"]},
            ],
        }
    )
    with pytest.raises(BundleError, match="feature-set hash mismatch"):
        read_bundle(path, compile_feature_set(other))
    with pytest.raises(BundleError, match="feature-set hash mismatch"):
        load_live_model(path, compile_feature_set(other))


def test_missing_pieces_are_named(tmp_path: Path, booster: lgb.Booster) -> None:
    with pytest.raises(BundleError, match="missing manifest.json"):
        read_bundle(tmp_path)
    path = make_bundle(tmp_path / "b", booster)
    (path / "model.txt").unlink()
    with pytest.raises(BundleError, match="missing file: model.txt"):
        read_bundle(path)


def test_fast_scorer_equals_booster_predict_on_real_rows(
    booster: lgb.Booster, data: LabelledData
) -> None:
    scorer = FastScorer(booster, data.feature_names)
    rows = data.features[::7].copy()
    rows[::5, 2] = np.nan  # missing values (an invalid book, a gap) take LightGBM's NaN branch
    fast = np.array([scorer.score(row) for row in rows])
    np.testing.assert_array_equal(fast, booster.predict(rows))
    assert scorer.score(rows[3].astype(np.float32)) == pytest.approx(
        booster.predict(rows[3:4].astype(np.float32))[0], abs=1e-7
    )
    with pytest.raises(Exception, match="values"):
        scorer.score(rows[0][:-1])


def test_explanation_is_lightgbm_contributions(booster: lgb.Booster, data: LabelledData) -> None:
    scorer = FastScorer(booster, data.feature_names)
    row = data.features[500]
    explanation = scorer.explain(row, top=3)
    reference = booster.predict(row[None, :], pred_contrib=True)[0]
    order = np.argsort(-np.abs(reference[:-1]))[:3]
    assert [c.feature for c in explanation.top] == [data.feature_names[i] for i in order]
    np.testing.assert_allclose(
        [c.contribution for c in explanation.top], reference[order], rtol=1e-12
    )
    assert explanation.expected_raw == pytest.approx(reference[-1], abs=1e-12)
    assert explanation.score == pytest.approx(1 / (1 + np.exp(-reference.sum())), abs=1e-12)
    assert explanation.raw_score == pytest.approx(
        booster.predict(row[None, :], raw_score=True)[0], abs=1e-9
    )


def test_combined_score_is_rise_minus_fall() -> None:
    assert combine_scores(0.9, 0.2) == pytest.approx(0.7)
    assert combine_scores(0.1, 0.8) == pytest.approx(-0.7)
    assert combine_scores(0.4, None) == 0.4 and combine_scores(None, 0.4) == -0.4
    assert combine_scores(float("nan"), 0.5) == -0.5
    assert combine_scores(1.0, 0.0) == 1.0 and combine_scores(0.0, 1.0) == -1.0


def test_coin_models_combine(tmp_path: Path, booster: lgb.Booster, data: LabelledData) -> None:
    plan = compile_feature_set(SMALL_FEATURES)
    make_bundle(tmp_path / "FILUSDT" / UP.label, booster, UP)
    make_bundle(tmp_path / "FILUSDT" / DOWN.label, booster, DOWN)  # same model, fall side
    models = load_coin_models(tmp_path, "filusdt", plan)
    row = data.features[1000]
    score = score_coin(models, row)
    p = booster.predict(row[None, :])[0]
    assert score.confidences == {UP.label: p, DOWN.label: p}
    assert score.score == 0.0
    assert load_coin_models(tmp_path, "BTCUSDT", plan) == []
