"""Full-engine replay speed against real time, on the shared tapes.

    python bench/replay.py

Figure: tape seconds replayed per wall second by the whole trading App of a backtest: book sync,
rows and candles, the default feature sets, a model (a small LightGBM bundle trained on the
tape's own rows for the default per-second set and promoted, so scoring runs from its warm-up
on), the model strategy (threshold low enough that it trades), the risk gate, the simulated
venue's fills, the portfolio and the SQLite journal. Baseline, measured in the same run on the
same frames: the market-data pipeline alone (decode, book sync, folding). Frames are read from
the tape once up front; building the App, training and reading are not timed. Best of 3 runs.
Goal: the full engine replays one symbol at >= 500x real time. Writes bench/results/replay.json.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import structlog

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.app import App
from engine.backtest import _tick, backtest_config, replay_frames, subscribed_streams
from engine.clock import ReplayClock
from engine.config import Config, parse_config
from engine.journal import Journal
from engine.marketdata import MarketDataPipeline
from engine.modes import exchange_info_from_tape
from engine.replay import replay_tape
from engine.tape import TapeFrame, read_tape
from strategy.features import compile_feature_set, compute_batch
from strategy.models import LightGBMParams, write_bundle
from strategy.models.train import fit_lightgbm

DATA = ROOT.parent / "shared" / "data" / "binance-tapes"
# The USDⓈ-M tape recorded `@depth@0ms` and `@trade`, which a default USDⓈ-M App does not
# subscribe to (it asks `@depth@100ms` and `@aggTrade`): its backtest replays no book and no
# trades, so it would measure nothing. One symbol per tape, spot.
TAPES = ["spot_btcusdt_20240808.gz", "spot_ethusdt_20240808.gz"]
GOAL_X = 500.0
REPEAT = 3
HORIZON_S = 30


def train_bundle(tape: Path, config: Config, models_dir: Path) -> None:
    """Promote a small real model for the tape's symbol on the default per-second feature set."""
    (spec,) = [s for s in config.features.sets if s.frequency == "second"]
    plan = compile_feature_set(spec)
    rows = replay_tape(tape, config.fold).rows
    symbol = str(rows["symbol"].iloc[0])
    features = compute_batch(rows, plan).to_numpy(dtype=np.float64)
    close = rows["close"].to_numpy(dtype=np.float64)
    future = np.roll(close, -HORIZON_S)
    usable = np.arange(0, len(rows) - HORIZON_S)
    labels = (future[usable] > close[usable]).astype(np.float64)
    params = LightGBMParams(num_boost_round=15, num_leaves=8, min_data_in_leaf=10, num_threads=1)
    booster = fit_lightgbm(features[usable], labels, plan.columns, params)
    write_bundle(
        models_dir / symbol / "up", booster.model_to_string(), symbol=symbol, plan=plan,
        label={"name": "up", "kind": "bench", "side": 1, "horizon_rows": HORIZON_S},
        threshold=0.2, training={"rows": len(usable)}, metrics={},
    )  # fmt: skip


def engine_config(tape: Path, models_dir: Path) -> Config:
    base = parse_config({
        "logging": {"console": "off", "file": None},
        "models": {"dir": str(models_dir)},
        "strategy": {"kind": "model", "entry": {"cooldown_s": 20},
                     "exits": {"max_hold_s": 45, "stop_loss_pct": 0.05}},
        "risk": {"cooldown_after_stop_s": 0},
    })  # fmt: skip
    return backtest_config(base, tape)


def time_engine(tape: Path, config: Config, frames: list[TapeFrame], scratch: Path) -> tuple:
    entries = exchange_info_from_tape([tape], config.market.symbols, config.market.type)
    best, stats = float("inf"), None
    for run in range(REPEAT):
        journal = Journal.open(scratch / f"journal-{tape.stem}-{run}.sqlite")
        clock = ReplayClock()
        app = App(config, clock=clock, journal=journal, exchange_info=entries,
                  tick_sizes={e["symbol"]: _tick(e) for e in entries})  # fmt: skip
        assert app.trading is not None and app.models.available
        start = time.perf_counter()
        replay_frames(app, clock, frames)
        app.pipeline.flush()
        app.trading.flush()
        best = min(best, time.perf_counter() - start)
        stats = app.trading.stats
        journal.close()
    return best, stats


def time_pipeline(config: Config, frames: list[TapeFrame]) -> float:
    wanted = subscribed_streams(config)
    stream = re.compile(rb'"stream":\s*"([^"]+)"')
    best = float("inf")
    for _ in range(REPEAT):
        pipeline = MarketDataPipeline(config.market.type, config.market.symbols, config.fold)
        start = time.perf_counter()
        for frame in frames:
            if frame.snapshot_symbol is not None:
                pipeline.on_snapshot(frame.snapshot_symbol, frame.payload, frame.ts_recv_ns)
                continue
            match = stream.search(frame.payload, 0, 200)
            if match is not None and match.group(1).decode() not in wanted:
                continue
            pipeline.on_frame(frame.payload, frame.ts_recv_ns)
        pipeline.flush()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        scratch = Path(tmp)
        for name in TAPES:
            tape = DATA / name
            if not tape.is_file():
                print(f"{name}: absent, skipped")
                continue
            models_dir = scratch / f"models-{tape.stem}"
            config = engine_config(tape, models_dir)
            train_bundle(tape, config, models_dir)
            frames = list(read_tape(tape))
            tape_s = (frames[-1].ts_recv_ns - frames[0].ts_recv_ns) / 1e9
            engine_s, stats = time_engine(tape, config, frames, scratch)
            pipeline_s = time_pipeline(config, frames)
            engine_x, pipeline_x = tape_s / engine_s, tape_s / pipeline_s
            row = {
                "tape": name,
                "tape_seconds": round(tape_s, 1),
                "figure_engine_x_realtime": round(engine_x, 1),
                "baseline": "market-data pipeline alone (decode, book sync, folding)",
                "baseline_x_realtime": round(pipeline_x, 1),
                "ratio_engine_to_baseline": round(engine_x / pipeline_x, 3),
                "engine_wall_s": round(engine_s, 4),
                "pipeline_wall_s": round(pipeline_s, 4),
                "orders": stats.submitted if stats else 0,
                "fills": stats.fills if stats else 0,
                "goal_x_realtime": GOAL_X,
                "met": engine_x >= GOAL_X,
            }
            results.append(row)
            print(
                f"{name}: full engine {engine_x:,.0f}x real time ({tape_s:.0f} s of tape in "
                f"{engine_s:.3f} s, {row['orders']} orders, {row['fills']} fills); baseline "
                f"pipeline alone {pipeline_x:,.0f}x; ratio {engine_x / pipeline_x:.2f}; "
                f"goal >= {GOAL_X:.0f}x: {'met' if row['met'] else 'NOT met'}"
            )
    # the standard rows bench/run reads (bench/report.py), one per tape
    rows = [
        {
            "name": r["tape"].split("_2")[0],
            "figure": f"full trading engine replaying {r['tape']}",
            "value": r["figure_engine_x_realtime"],
            "unit": "x real time",
            "baseline": r["baseline"],
            "baseline_value": r["baseline_x_realtime"],
            "ratio": r["ratio_engine_to_baseline"],
            "goal": f">= {GOAL_X:g}x real time",
            "met": r["met"],
        }
        for r in results
    ]
    out = Path(os.environ.get("TICKLOOP_BENCH_RESULTS") or ROOT / "bench" / "results") / "replay.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {"goal_x_realtime": GOAL_X, "results": results, "rows": rows}
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
