"""A bundle whose manifest names another coin than its directory is refused, its coin not traded.

The bundles are real (a tiny LightGBM model written by write_bundle); only where they are
installed differs from what their manifests say.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import structlog

from engine.livemodels import LiveModels
from strategy.features import compile_feature_set
from strategy.features.plan import FeaturePlan
from strategy.models import write_bundle
from tests.support.tiny_models import stats_feature_set, train_tiny_model

SPEC = stats_feature_set("sym")


@pytest.fixture(scope="module")
def plan() -> FeaturePlan:
    return compile_feature_set(SPEC)


@pytest.fixture(scope="module")
def model_text(plan: FeaturePlan) -> str:
    return train_tiny_model(len(plan.columns), seed=5, rows=400, leaves=4, rounds=4)


def _write(path: Path, symbol: str, model_text: str, plan: FeaturePlan) -> Path:
    write_bundle(
        path, model_text, symbol=symbol, plan=plan,
        label={"name": path.name, "kind": "forward", "side": 1, "horizon_rows": 30},
        threshold=0.6, training={"rows": 400}, metrics={},
    )  # fmt: skip
    return path


def test_a_bundle_of_another_coin_is_refused_naming_both_symbols(
    tmp_path: Path, model_text: str, plan: FeaturePlan
) -> None:
    models = tmp_path / "models"
    eth = _write(models / "ETHUSDT" / "up", "ETHUSDT", model_text, plan)
    shutil.copytree(eth, models / "BTCUSDT" / "up")  # ETH's bundle installed for BTC
    with structlog.testing.capture_logs() as logs:
        live = LiveModels(models, ["BTCUSDT", "ETHUSDT"], {"sym": plan})
    assert list(live.models) == ["ETHUSDT"] and live.models["ETHUSDT"][0].bundle.path == eth
    reason = live.refused["BTCUSDT"]
    assert reason.startswith("up: ") and "ETHUSDT" in reason and "BTCUSDT" in reason
    assert "ETHUSDT" not in live.refused
    refusals = [e for e in logs if e["event"] == "model_refused"]
    assert [e["symbol"] for e in refusals] == ["BTCUSDT"]


def test_one_misplaced_bundle_blocks_the_coin_and_a_reload_clears_it(
    tmp_path: Path, model_text: str, plan: FeaturePlan
) -> None:
    models = tmp_path / "models"
    _write(models / "BTCUSDT" / "down", "BTCUSDT", model_text, plan)
    _write(models / "BTCUSDT" / "up", "SOLUSDT", model_text, plan)
    live = LiveModels(models, ["BTCUSDT"], {"sym": plan})
    # the correct "down" bundle alone would score BTC differently than promoted: nothing scores
    assert not live.available and "SOLUSDT" in live.refused["BTCUSDT"]
    _write(models / "BTCUSDT" / "up", "BTCUSDT", model_text, plan)
    live.reload(models, ["BTCUSDT"], {"sym": plan})
    assert live.available and live.refused == {}
    assert sorted(m.bundle.label_name for m in live.models["BTCUSDT"]) == ["down", "up"]
