"""Promoted bundles score the live feature vectors exactly as batch scoring does, and a corrupt
bundle is refused (its coin not traded) with the reason in one log line.

A tiny real LightGBM model is trained on per-second rows folded offline from the shared spot
tape, with a small second-frequency feature set; it is promoted into a temporary models dir, and
the App runs over the loopback simulator replaying the same tape.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
import structlog
from live_harness import live_run

from engine.app import App
from engine.config import parse_config
from engine.replay import replay_tape
from strategy.features import FeatureSetSpec, compile_feature_set, compute_batch
from strategy.models import LightGBMParams, write_bundle
from strategy.models.train import fit_lightgbm
from strategy.signals import ScoreUpdated

FAST_SET = FeatureSetSpec.model_validate(
    {
        "name": "fast",
        "frequency": "second",
        "generators": [
            {"kind": "stats", "columns": ["close"], "transform": "log_return",
             "windows": [5, 20], "stats": ["mean", "std", "slope"]},
        ],
    }
)
HORIZON_S = 30
SYMBOL = "BTCUSDT"


def feature_overrides(models_dir: Path) -> dict:
    return {
        "features": {"sets": [FAST_SET.model_dump(mode="json")]},
        "models": {"dir": str(models_dir)},
    }


def train_tiny_bundle(tape: Path, models_dir: Path, threshold: float = 0.5) -> Path:
    """Train a small real model on the tape's rows (label: close higher in 30 s) and promote it."""
    rows = replay_tape(tape, parse_config({}).fold).rows
    rows = rows[rows["symbol"] == SYMBOL].reset_index(drop=True)
    plan = compile_feature_set(FAST_SET)
    features = compute_batch(rows, plan).to_numpy(dtype=np.float64)
    close = rows["close"].to_numpy(dtype=np.float64)
    future = np.roll(close, -HORIZON_S)
    usable = np.arange(plan.warmup_rows - 1, len(rows) - HORIZON_S)
    labels = (future[usable] > close[usable]).astype(np.float64)
    params = LightGBMParams(num_boost_round=15, num_leaves=8, min_data_in_leaf=10, num_threads=1)
    booster = fit_lightgbm(features[usable], labels, plan.columns, params)
    bundle_dir = models_dir / SYMBOL / "up"
    write_bundle(
        bundle_dir, booster.model_to_string(), symbol=SYMBOL, plan=plan,
        label={"name": "up", "kind": "test", "side": 1, "horizon_rows": HORIZON_S},
        threshold=threshold, training={"rows": len(usable)}, metrics={},
    )
    return bundle_dir


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory, tapes: dict[str, Path]) -> Path:
    models_dir = tmp_path_factory.mktemp("models")
    train_tiny_bundle(tapes["spot_btcusdt"], models_dir)
    return models_dir


async def test_live_scores_equal_batch_scores(tapes: dict[str, Path], tiny_models: Path) -> None:
    scores: list[ScoreUpdated] = []

    def listen(app: App) -> None:
        assert app.models.available and not app.models.refused
        app.models.listeners.append(scores.append)

    run = await live_run(
        tapes["spot_btcusdt"], overrides={**feature_overrides(tiny_models), "mode": "paper"},
        on_app=listen,
    )
    assert run.rows is not None
    rows = run.rows[run.rows["symbol"] == SYMBOL].reset_index(drop=True)
    plan = compile_feature_set(FAST_SET)
    batch = compute_batch(rows, plan).to_numpy(dtype=np.float64)
    booster = lgb.Booster(model_file=str(tiny_models / SYMBOL / "up" / "model.txt"))
    expected = booster.predict(batch)  # the plain Python path, not the engine's fast scorer
    position = {int(ts): i for i, ts in enumerate(rows["ts"])}
    warm_rows = len(rows) - (plan.warmup_rows - 1)
    assert len(scores) >= warm_rows - 5 and len(scores) > 100
    for update in scores:
        i = position[update.ts_ms]
        assert i >= plan.warmup_rows - 1
        assert update.confidence == pytest.approx(expected[i], abs=1e-9)
        assert update.score == pytest.approx(expected[i], abs=1e-9)  # rise only: rise - 0
        assert update.threshold == 0.5 and update.fall_confidence is None
        assert len(plan.columns) == 6 and len(update.contributions) == 5  # top 5 of 6
        assert {name for name, _ in update.contributions} <= set(plan.columns)
    # contributions sum (with the expected value) to the raw score: check one through LightGBM
    last = scores[-1]
    contrib = booster.predict(batch[position[last.ts_ms]][None, :], pred_contrib=True)[0]
    by_name = dict(zip(plan.columns, contrib[:-1], strict=True))
    for name, share in last.contributions:
        assert share == pytest.approx(by_name[name], abs=1e-9)


def test_corrupt_bundle_is_refused_naming_the_checksum(tiny_models: Path, tmp_path: Path) -> None:
    models_dir = tmp_path / "models"
    shutil.copytree(tiny_models, models_dir)
    model_file = models_dir / SYMBOL / "up" / "model.txt"
    text = model_file.read_text()
    model_file.write_text(text.replace("shrinkage=", "shrinkage=0", 1))
    config = parse_config({**feature_overrides(models_dir), "market": {"symbols": [SYMBOL]},
                           "logging": {"console": "off", "file": None}})
    with structlog.testing.capture_logs() as logs:
        app = App(config)
    assert not app.models.available
    assert "checksum mismatch: model.txt" in app.models.refused[SYMBOL]
    refusals = [e for e in logs if e["event"] == "model_refused"]
    assert len(refusals) == 1 and refusals[0]["reason"] == "checksum mismatch: model.txt"
    assert refusals[0]["symbol"] == SYMBOL


def test_bundle_of_another_feature_set_is_refused(tiny_models: Path, tmp_path: Path) -> None:
    models_dir = tmp_path / "models"
    shutil.copytree(tiny_models, models_dir)
    other = FAST_SET.model_dump(mode="json")
    other["generators"][0]["windows"] = [5, 30]  # same name, other definition -> other hash
    config = parse_config({"features": {"sets": [other]}, "models": {"dir": str(models_dir)},
                           "market": {"symbols": [SYMBOL]}})
    with structlog.testing.capture_logs() as logs:
        app = App(config)
    assert not app.models.available
    reason = next(e for e in logs if e["event"] == "model_refused")["reason"]
    assert reason.startswith("feature-set hash mismatch")


def test_reload_swaps_bundles_and_blocks_a_coin_whose_new_bundle_is_refused(
    tiny_models: Path, tmp_path: Path
) -> None:
    models_dir = tmp_path / "models"
    shutil.copytree(tiny_models, models_dir)
    config = parse_config({**feature_overrides(models_dir), "market": {"symbols": [SYMBOL]},
                           "logging": {"console": "off", "file": None}})
    app = App(config)
    assert app.models.available and app.models.listeners == []
    listener = app.models.listeners.append  # listeners survive a reload (same object)
    model_file = models_dir / SYMBOL / "up" / "model.txt"
    good = model_file.read_text()
    model_file.write_text(good.replace("shrinkage=", "shrinkage=0", 1))
    answer = app.reload_models()
    assert "Refused (not traded)" in answer and "checksum mismatch: model.txt" in answer
    assert SYMBOL not in app.models.models and app.models.listeners.append == listener
    model_file.write_text(good)
    assert app.reload_models().startswith("Models reloaded: {'BTCUSDT': ['up']}")
    assert app.models.available and SYMBOL not in app.models.refused
