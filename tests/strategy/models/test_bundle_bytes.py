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

from strategy.features import FeatureSetSpec, compile_feature_set
from strategy.features.plan import FeaturePlan
from strategy.models import read_bundle, write_bundle
from strategy.models.bundle import MODEL_FILE
from strategy.models.score import live_model_from

SPEC = FeatureSetSpec.model_validate(
    {
        "name": "bytes",
        "frequency": "second",
        "generators": [
            {"kind": "stats", "columns": ["close"], "transform": "log_return",
             "windows": [5, 20], "stats": ["mean", "std", "slope"]},
        ],
    }
)  # fmt: skip


def _train(n_features: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(500, n_features))
    labels = (rows[:, seed % n_features] + rng.normal(size=500) > 0).astype(np.float64)
    params = {"objective": "binary", "num_leaves": 6, "min_data_in_leaf": 10, "verbose": -1,
              "num_threads": 1, "deterministic": True}  # fmt: skip
    return lgb.train(params, lgb.Dataset(rows, labels), num_boost_round=8).model_to_string()


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
