"""Command bodies for `tickloop train`, `tickloop models` and `tickloop promote`.

The CLI parses arguments and config, then calls these; they return values (and print nothing),
so tests and other tools can call them directly.

    run_train(candles, symbol=..., feature_set=..., label=..., models=..., walk_forward=False)
    list_models(models, metric=..., symbol=..., label=...)   -> [RunSummary]; format_runs(...)
    promote(run_id, models, plan=None)                        -> installed bundle directory
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from strategy.features import FeaturePlan, FeatureSetSpec
from strategy.features.plan import as_plan
from strategy.labels import LabelSpec
from strategy.models.bundle import Bundle, BundleError, read_bundle, write_bundle
from strategy.models.config import ModelsConfig
from strategy.models.dataset import LabelledData, build_dataset
from strategy.models.metrics import write_pr_svg
from strategy.models.score import live_bundle_dir
from strategy.models.train import TrainedModel, train_model
from strategy.models.walkforward import WalkForwardResult, walk_forward


@dataclass(frozen=True)
class TrainReport:
    """What one `tickloop train` run produced."""

    run_id: str
    symbol: str
    label: str
    bundle: Bundle
    metrics: dict[str, float]
    walk_forward: WalkForwardResult | None = None
    params: dict[str, Any] = field(default_factory=dict)


def iso(ts_ms: int) -> str:
    """Format epoch milliseconds as UTC ISO-8601."""
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def label_manifest(label: LabelSpec) -> dict[str, Any]:
    """Describe a label generator for a bundle manifest."""
    return {
        "name": label.label,
        "kind": label.kind,
        "side": label.side,
        "horizon_rows": label.horizon_rows,
        "definition": label.model_dump(mode="json"),
    }


def run_train(
    candles: pd.DataFrame,
    *,
    symbol: str,
    feature_set: FeatureSetSpec | FeaturePlan,
    label: LabelSpec,
    models: ModelsConfig,
    walk_forward_eval: bool = False,
    tracking_uri: str | None = None,
    run_name: str | None = None,
    extra_tags: dict[str, str] | None = None,
    parent_run_id: str | None = None,
    progress: bool = False,
    data: LabelledData | None = None,
) -> TrainReport:
    """Train a coin's model for a label, log the run to MLflow with its bundle; return a report."""
    from strategy.models.tracking import BUNDLE_ARTIFACT, Tracker

    plan = as_plan(feature_set)
    config = models.train
    data = data if data is not None else build_dataset(candles, plan, label)
    trained = train_model(data, config)
    metrics = dict(trained.metrics)
    wf = walk_forward(data, config, progress=progress) if walk_forward_eval else None
    if wf is not None:
        metrics.update(wf.metrics)
    tracker = Tracker(tracking_uri or models.resolved_tracking_uri(), models.experiment)
    data_range = (int(data.ts_ms[0]), int(data.ts_ms[-1]))
    tags = {
        "symbol": symbol.upper(),
        "label": label.label,
        "kind": "train",
        "feature_set": plan.spec.label,
        "feature_set_hash": plan.hash,
        "data_start": iso(data_range[0]),
        "data_end": iso(data_range[1]),
        **(extra_tags or {}),
    }
    run_id = tracker.start(run_name or f"{symbol.upper()}-{label.label}", tags, parent_run_id)
    try:
        params = {
            "lightgbm": config.lightgbm.model_dump(),
            "label": label.model_dump(mode="json"),
            "train": config.model_dump(mode="json", exclude={"lightgbm", "walk_forward"}),
            "walk_forward": config.walk_forward.model_dump(mode="json") if wf else "off",
            "features": {
                "name": plan.spec.label,
                "columns": len(plan.columns),
                "warmup_rows": plan.warmup_rows,
            },
        }
        tracker.log(run_id, params=params, metrics=metrics)
        with tempfile.TemporaryDirectory(prefix="tickloop-train-") as tmp:
            bundle = _write_run_bundle(
                Path(tmp) / BUNDLE_ARTIFACT,
                trained,
                data,
                symbol,
                label,
                metrics,
                run_id,
                config.fee_pct,
            )
            plot = write_pr_svg(
                Path(tmp) / "precision_recall.svg",
                trained.curves(data),
                f"{symbol.upper()} {label.label}: validation precision/recall",
                base_rate=metrics.get("val_base_rate"),
            )
            tracker.log_artifact(run_id, plot)
            tracker.log_artifact(run_id, bundle.path, BUNDLE_ARTIFACT)
            if wf is not None:
                steps = Path(tmp) / "walk_forward_steps.csv"
                pd.DataFrame([dataclasses.asdict(s) for s in wf.steps]).to_csv(steps, index=False)
                tracker.log_artifact(run_id, steps)
        tracker.finish(run_id)
    except BaseException:
        tracker.finish(run_id, failed=True)
        raise
    return TrainReport(run_id, symbol.upper(), label.label, bundle, metrics, wf, params)


def _write_run_bundle(
    path: Path,
    trained: TrainedModel,
    data: LabelledData,
    symbol: str,
    label: LabelSpec,
    metrics: dict[str, float],
    run_id: str,
    fee_pct: float,
) -> Bundle:
    return write_bundle(
        path,
        trained.booster.model_to_string(),
        symbol=symbol.upper(),
        plan=data.plan,
        label=label_manifest(label),
        threshold=trained.threshold,
        training={
            "train_start_ms": trained.train_range_ms[0],
            "train_end_ms": trained.train_range_ms[1],
            "validation_start_ms": trained.validation_range_ms[0],
            "validation_end_ms": trained.validation_range_ms[1],
            "data_start_ms": int(data.ts_ms[0]),
            "data_end_ms": int(data.ts_ms[-1]),
            "purge_rows": int(trained.split.purged),
            "fee_pct": fee_pct,
            "lightgbm": trained.params,
        },
        metrics={k: v for k, v in metrics.items() if np.isfinite(v)},
        extra={"mlflow_run_id": run_id},
    )


def list_models(
    models: ModelsConfig,
    metric: str = "val_profit_pct",
    symbol: str | None = None,
    label: str | None = None,
    kind: str | None = None,
    ascending: bool = False,
    limit: int = 50,
    tracking_uri: str | None = None,
) -> list:
    """Return tracked runs sorted by a metric (best first)."""
    from strategy.models.tracking import Tracker

    tracker = Tracker(tracking_uri or models.resolved_tracking_uri(), models.experiment)
    return tracker.runs(metric, symbol, label, kind, ascending, limit)


def format_runs(runs: list, metric: str = "val_profit_pct") -> str:
    """Render runs as a plain-text table for the terminal."""
    header = f"{'run id':32}  {'symbol':10} {'label':24} {'kind':8} {metric:>16} {'val_roc_auc':>11}  started"
    lines = [header, "-" * len(header)]
    for run in runs:
        value = run.metrics.get(metric)
        auc = run.metrics.get("val_roc_auc")
        lines.append(
            f"{run.run_id:32}  {run.symbol:10} {run.label:24} {run.kind:8} "
            f"{'' if value is None else f'{value:.4f}':>16} "
            f"{'' if auc is None else f'{auc:.4f}':>11}  {iso(run.start_ms)}"
        )
    return "\n".join(lines)


def promote(
    run_id: str,
    models: ModelsConfig,
    plan: FeaturePlan | None = None,
    tracking_uri: str | None = None,
) -> Path:
    """Install a run's bundle as its coin's live model for its label; return the directory.

    The bundle is verified (checksums; with `plan`, the configured feature set) before it
    replaces the live one, and the swap is a rename, so the engine never sees half a bundle.
    """
    from strategy.models.tracking import Tracker

    tracker = Tracker(tracking_uri or models.resolved_tracking_uri(), models.experiment)
    models.dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".promote-", dir=models.dir) as tmp:
        downloaded = tracker.download_bundle(run_id, Path(tmp))
        bundle = read_bundle(downloaded, plan)
        if bundle.manifest.get("mlflow_run_id") != run_id:
            raise BundleError(
                f"bundle of run {run_id} names run {bundle.manifest.get('mlflow_run_id')}"
            )
        target = live_bundle_dir(models.dir, bundle.symbol, bundle.label_name)
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.parent / f".{target.name}.new"
        if staged.exists():
            shutil.rmtree(staged)
        shutil.copytree(downloaded, staged)
        previous = target.parent / f".{target.name}.previous"
        if previous.exists():
            shutil.rmtree(previous)
        if target.exists():
            target.rename(previous)
        staged.rename(target)
    read_bundle(target, plan)
    return target
