"""End to end on real klines: download -> merge -> features -> labels -> train -> walk-forward ->
MLflow run -> promote -> the engine loads the verified bundle and its streamed scores equal
batch scoring of the same candles."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
from aiohttp import web
from models_helpers import FAST_TRAIN, SMALL_FEATURES

from engine.model import Market
from exchange.history import download_klines, read_stored_klines
from exchange.sim.klines import KlineServer, build_klines_app
from strategy.features import FeatureSetSpec, StreamingFeatures, compile_feature_set, compute_batch
from strategy.labels import HighLow2Label
from strategy.models import BundleError, ModelsConfig, load_live_model
from strategy.models.commands import list_models, promote, run_train
from strategy.models.merge import gap_report, merge_sources, source_frame

DAY = 86_400_000
LABEL = HighLow2Label(direction="up", horizon=30, threshold_pct=0.4, tolerance=0.5)


@pytest.mark.slow
async def test_download_to_live_scores(shared_data: Path, tmp_path: Path) -> None:
    archive = shared_data / "klines" / "usdm-1m" / "FILUSDT-1m-2023-08.csv.gz"
    server = KlineServer()
    server.add_file("usdm", "FILUSDT", [archive])
    runner = web.AppRunner(build_klines_app(server))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        start = int(server.minutes[("usdm", "FILUSDT")]["open_time"].iloc[0])
        result = await download_klines(
            Market.USDM,
            "FILUSDT",
            "1m",
            start,
            start + 14 * DAY,
            tmp_path / "klines",
            base_url=f"http://127.0.0.1:{runner.addresses[0][1]}",
            progress=False,
        )
    finally:
        await runner.cleanup()
    assert result.bars_written == 14 * 1440

    klines = read_stored_klines(tmp_path / "klines", Market.USDM, "FILUSDT", "1m")
    merged = merge_sources({"usdm": klines})
    assert gap_report(merged, "usdm") == []
    candles = source_frame(merged, "usdm")

    models = ModelsConfig(dir=tmp_path / "models", train=FAST_TRAIN)
    report = run_train(
        candles,
        symbol="FILUSDT",
        feature_set=SMALL_FEATURES,
        label=LABEL,
        models=models,
        walk_forward_eval=True,
    )
    assert report.walk_forward is not None and len(report.walk_forward.steps) == 5
    for key in ("val_roc_auc", "val_profit_pct", "wf_roc_auc", "wf_profit_pct", "baseline_roc_auc"):
        assert np.isfinite(report.metrics[key]), key

    runs = list_models(models, metric="val_roc_auc")
    assert [r.run_id for r in runs] == [report.run_id]
    run = runs[0]
    assert run.tags["feature_set_hash"] == compile_feature_set(SMALL_FEATURES).hash
    warm_minutes = compile_feature_set(SMALL_FEATURES).warmup_rows - 1  # first warm bar
    assert (
        run.tags["data_start"] == f"2023-08-01T{warm_minutes // 60:02d}:{warm_minutes % 60:02d}:00Z"
    )
    assert run.metrics["wf_trades"] == report.metrics["wf_trades"]
    artifacts = {a.path for a in models_client(models).list_artifacts(run.run_id)}
    assert {"precision_recall.svg", "bundle", "walk_forward_steps.csv"} <= artifacts

    installed = promote(report.run_id, models, plan=compile_feature_set(SMALL_FEATURES))
    assert installed == models.dir / "FILUSDT" / LABEL.label
    plan = compile_feature_set(SMALL_FEATURES)
    live = load_live_model(installed, plan)
    assert live.threshold == report.metrics["threshold"]

    # The engine side: candles one at a time through streaming features and the fast scorer.
    streaming = StreamingFeatures(plan)
    streamed: list[tuple[int, float]] = []
    for index, row in enumerate(candles.to_dict("records")):
        vector = streaming.update(row)
        if vector is not None:
            streamed.append((index, live.confidence(vector)))
    assert streamed[0][0] == plan.warmup_rows - 1
    batch_features = compute_batch(candles, plan).to_numpy()
    rows = np.array([i for i, _ in streamed])
    batch_scores = lgb.Booster(model_file=str(installed / "model.txt")).predict(
        batch_features[rows]
    )
    np.testing.assert_allclose([s for _, s in streamed], batch_scores, rtol=0, atol=1e-9)
    assert len(streamed) == len(candles) - plan.warmup_rows + 1

    other = FeatureSetSpec.model_validate(
        {
            **SMALL_FEATURES.model_dump(),
            "generators": SMALL_FEATURES.model_dump()["generators"][:-1],
        }
    )
    with pytest.raises(BundleError, match="feature-set hash mismatch"):
        load_live_model(installed, compile_feature_set(other))


def models_client(models: ModelsConfig):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=models.resolved_tracking_uri())


def test_replayed_tape_rows_score_like_batch(tapes: dict[str, Path], tmp_path: Path) -> None:
    """A per-second model on a real tape's rows: the engine's streamed scores equal batch."""
    from engine.config import FoldConfig
    from engine.replay import replay_tape
    from strategy.labels import ForwardLabel
    from strategy.models import (
        LightGBMParams,
        TrainConfig,
        build_dataset,
        train_model,
        write_bundle,
    )
    from strategy.models.commands import label_manifest

    rows = replay_tape(tapes["usdm_btcusdt"], FoldConfig()).rows.drop(columns=["symbol"])
    spec = FeatureSetSpec.model_validate(
        {
            "name": "seconds",
            "frequency": "second",
            "generators": [
                {"kind": "book", "flow_window": 5},
                {"kind": "stats", "columns": ["close"], "windows": [10], "stats": ["std", "slope"]},
                {"kind": "talib", "name": "RSI", "windows": [10]},
            ],
        }
    )
    label = ForwardLabel(direction="up", horizon=10, threshold_pct=0.005)
    data = build_dataset(rows, spec, label)
    config = TrainConfig(
        lightgbm=LightGBMParams(num_boost_round=10, num_leaves=4, min_data_in_leaf=5),
        validation_fraction=0.3,
        baseline=False,
        min_trades=1,
    )
    trained = train_model(data, config)
    plan = compile_feature_set(spec)
    path = write_bundle(
        tmp_path / "BTCUSDT" / label.label,
        trained.booster.model_to_string(),
        symbol="BTCUSDT",
        plan=plan,
        label=label_manifest(label),
        threshold=trained.threshold,
        training={},
        metrics=trained.metrics,
    ).path
    live = load_live_model(path, plan)
    streaming = StreamingFeatures(plan)
    streamed = [
        live.confidence(v) for v in map(streaming.update, rows.to_dict("records")) if v is not None
    ]
    batch = trained.booster.predict(compute_batch(rows, plan).to_numpy()[plan.warmup_rows - 1 :])
    assert len(streamed) == len(batch) == len(rows) - plan.warmup_rows + 1
    np.testing.assert_allclose(streamed, batch, rtol=0, atol=1e-9)
