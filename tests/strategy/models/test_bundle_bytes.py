"""The live scorer is built from the model text read_bundle verified, not from a second read.

A model.txt replaced on disk after the checks (a promote racing a reload, a hand edit) must not
reach LightGBM unchecked: the scores come from the verified text. Expected scores are LightGBM's
own `Booster.predict` on a copy of the original file, not the fast scorer under test.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from strategy.features import compile_feature_set
from strategy.features.plan import FeaturePlan
from strategy.models import read_bundle, write_bundle
from strategy.models.bundle import MODEL_FILE
from strategy.models.score import live_model_from
from tests.support.tiny_models import stats_feature_set, train_tiny_model

SPEC = stats_feature_set("bytes")


def _train(n_features: int, seed: int) -> str:
    return train_tiny_model(n_features, seed=seed, rows=500, leaves=6, rounds=8,
                            label_column=seed % n_features)  # fmt: skip


@pytest.fixture(scope="module")
def plan() -> FeaturePlan:
    return compile_feature_set(SPEC)


def test_a_model_file_swapped_after_verification_is_not_what_scores(
    tmp_path: Path, plan: FeaturePlan
) -> None:
    n_features = len(plan.columns)
    first, second = _train(n_features, seed=1), _train(n_features, seed=2)
    path = tmp_path / "BTCUSDT" / "up"
    write_bundle(
        path, first, symbol="BTCUSDT", plan=plan,
        label={"name": "up", "kind": "forward", "side": 1, "horizon_rows": 30}, threshold=0.6,
        training={"rows": 500}, metrics={},
    )  # fmt: skip
    original = tmp_path / "original.txt"
    shutil.copyfile(path / MODEL_FILE, original)

    bundle = read_bundle(path, plan)
    (path / MODEL_FILE).write_text(second, encoding="utf-8")  # swapped after the checks
    live = live_model_from(bundle)

    rows = np.random.default_rng(7).normal(size=(50, n_features))
    expected = lgb.Booster(model_file=str(original)).predict(rows)
    swapped = lgb.Booster(model_file=str(path / MODEL_FILE)).predict(rows)
    assert not np.allclose(expected, swapped)  # the swap would change the scores
    got = np.array([live.confidence(row) for row in rows])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
