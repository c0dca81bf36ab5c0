"""Single-row model scoring latency: our C-API fast scorer against the usual ways, in one run.

    python bench/scoring.py [--rounds 200] [--calls 10000]

A LightGBM model of the live size (the default minute feature set, ~240 columns; 200 trees of
31 leaves) is trained on real FILUSDT one-minute candles (../shared/data/klines). Then one
feature row at a time (rotating over 1,000 real rows) is scored by:

* `FastScorer.score` — LightGBM's `LGBM_BoosterPredictForMatSingleRowFast` through ctypes (ours);
* `Booster.predict(row[None, :])` — the LightGBM Python API (baseline);
* scikit-learn `predict_proba` of the logistic baseline pipeline and of a
  HistGradientBoostingClassifier of the same size (baselines).

Prints p50 / p99 per call in µs, ratios to `Booster.predict`, the goal (≤ 15 µs per coin) and
checks the fast path's output equals `Booster.predict` exactly. Writes bench/results/scoring.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import lightgbm as lgb
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exchange.history import read_kline_csv
from strategy.features import FeaturesConfig, compile_feature_set, compute_batch
from strategy.labels import ForwardLabel
from strategy.models import FastScorer
from strategy.models.merge import klines_to_candles
from strategy.models.train import fit_baseline

KLINES = ROOT.parent / "shared" / "data" / "klines" / "usdm-1m" / "FILUSDT-1m-2023-08.csv.gz"
GOAL_US = 15.0


def percentiles(
    fn: Callable[[np.ndarray], object], rows: np.ndarray, calls: int
) -> dict[str, float]:
    for i in range(min(calls // 10, 1000)):  # warm caches and lazy initialisation
        fn(rows[i % len(rows)])
    samples = np.empty(calls)
    clock = time.perf_counter_ns
    for i in range(calls):
        row = rows[i % len(rows)]
        start = clock()
        fn(row)
        samples[i] = clock() - start
    return {
        "p50_us": float(np.percentile(samples, 50) / 1e3),
        "p99_us": float(np.percentile(samples, 99) / 1e3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--calls", type=int, default=10_000)
    args = parser.parse_args()

    candles = klines_to_candles(read_kline_csv(KLINES))
    plan = compile_feature_set(FeaturesConfig().get("minute"))
    features = compute_batch(candles, plan).to_numpy()[plan.warmup_rows :]
    labels = ForwardLabel(horizon=60, threshold_pct=1.0).compute(candles)[plan.warmup_rows :]
    known = ~np.isnan(labels)
    x, y = features[known], labels[known]
    t0 = time.perf_counter()
    booster = lgb.train(
        {
            "objective": "binary",
            "num_leaves": 31,
            "learning_rate": 0.05,
            "verbose": -1,
            "num_threads": 2,
            "deterministic": True,
        },
        lgb.Dataset(x, y),
        num_boost_round=args.rounds,
    )
    train_s = time.perf_counter() - t0
    logistic = fit_baseline(x, y)
    from sklearn.ensemble import HistGradientBoostingClassifier

    # scikit-learn's binning fails on all-NaN columns (klines carry no book depth): drop them.
    usable = ~np.isnan(x).all(axis=0) & np.isfinite(np.nan_to_num(x)).all(axis=0)
    hgb = HistGradientBoostingClassifier(
        max_iter=args.rounds, max_leaf_nodes=31, learning_rate=0.05, early_stopping=False
    ).fit(x[:, usable], y)
    rows = np.ascontiguousarray(features[-1000:])
    scorer = FastScorer(booster, plan.columns)

    fast = np.array([scorer.score(r) for r in rows])
    reference = booster.predict(rows)
    max_diff = float(np.max(np.abs(fast - reference)))

    results = {
        "fast_scorer (C API single row)": percentiles(scorer.score, rows, args.calls),
        "Booster.predict (baseline)": percentiles(
            lambda r: booster.predict(r[None, :]), rows, max(args.calls // 5, 1000)
        ),
        "sklearn HistGradientBoosting predict_proba": percentiles(
            lambda r: hgb.predict_proba(r[None, usable]), rows, max(args.calls // 5, 1000)
        ),
        "sklearn logistic pipeline predict_proba": percentiles(
            lambda r: logistic.predict_proba(r[None, :]), rows, max(args.calls // 5, 1000)
        ),
    }
    baseline = results["Booster.predict (baseline)"]["p50_us"]
    print(
        f"model: {len(plan.columns)} features, {args.rounds} trees x 31 leaves, trained on "
        f"{len(y)} real FILUSDT candles in {train_s:.1f} s"
    )
    print(f"{'method':46} {'p50 µs':>9} {'p99 µs':>9} {'vs Booster.predict':>19}")
    for name, figures in results.items():
        figures["ratio_to_booster_predict"] = figures["p50_us"] / baseline
        print(
            f"{name:46} {figures['p50_us']:9.1f} {figures['p99_us']:9.1f} "
            f"{figures['ratio_to_booster_predict']:18.2f}x"
        )
    fast_p50 = results["fast_scorer (C API single row)"]["p50_us"]
    print(
        f"goal: <= {GOAL_US:.0f} µs per coin -> fast scorer p50 {fast_p50:.1f} µs "
        f"({'met' if fast_p50 <= GOAL_US else 'NOT met'}); "
        f"max |fast - Booster.predict| = {max_diff:g}"
    )
    out = Path(os.environ.get("TICKLOOP_BENCH_RESULTS") or ROOT / "bench" / "results") / "scoring.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "features": len(plan.columns),
                "trees": args.rounds,
                "leaves": 31,
                "results": results,
                "goal_us": GOAL_US,
                "goal_met": fast_p50 <= GOAL_US,
                "max_abs_diff_fast_vs_predict": max_diff,
                # the standard keys bench/run reads (bench/report.py)
                "figure": f"FastScorer.score p50, one row ({len(plan.columns)} features, "
                f"{args.rounds} trees)",
                "value": fast_p50,
                "unit": "µs",
                "baseline": "LightGBM Booster.predict(row[None, :]) p50",
                "baseline_value": baseline,
                "ratio": baseline / fast_p50,
                "goal": f"<= {GOAL_US:g} µs per coin",
                "met": fast_p50 <= GOAL_US,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
