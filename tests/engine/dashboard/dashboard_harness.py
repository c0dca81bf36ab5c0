"""Run a real App with a dashboard against the loopback simulator replaying recorded tapes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from engine.app import App
from engine.commands import fetch_tick_sizes, point_at
from engine.config import parse_config
from engine.dashboard import Dashboard, DashboardConfig, attach_dashboard
from engine.tape import infer_market, tape_symbols
from exchange.sim.server import SimServer

Body = Callable[[SimServer, App, Dashboard], Awaitable[None]]


async def run_with_dashboard(
    tapes: Sequence[Path],
    body: Body,
    *,
    speed: float = 20.0,
    overrides: dict | None = None,
    dashboard: DashboardConfig | None = None,
    timeout_s: float = 180.0,
) -> App:
    """Replay tapes into an App with a dashboard on a free loopback port; run body; stop."""
    market = infer_market(tapes[0])
    symbols = [s for tape in tapes for s in tape_symbols(tape)]
    raw: dict = {
        "logging": {"console": "off", "file": None},
        "book": {"snapshot_limit": 5000, "min_resync_interval_s": 0.05},
    }
    raw.update(overrides or {})
    async with SimServer(list(tapes), speed=speed) as sim:
        config = point_at(parse_config(raw), sim.base_http, sim.base_ws, market, symbols)
        app = App(config, tick_sizes=await fetch_tick_sizes(config))
        board = attach_dashboard(app, dashboard or DashboardConfig(port=0))

        async def drive() -> None:
            try:
                await asyncio.wait_for(board.started.wait(), timeout=30)
                await body(sim, app, board)
            finally:
                app.stop()

        async with asyncio.TaskGroup() as tg:
            tg.create_task(drive())
            await asyncio.wait_for(app.run(), timeout=timeout_s)
    return app


FAST_SET = {
    "name": "fast",
    "frequency": "second",
    "generators": [
        {
            "kind": "stats",
            "columns": ["close"],
            "transform": "log_return",
            "windows": [5, 20],
            "stats": ["mean", "std", "slope"],
        },
    ],
}
HORIZON_S = 30


def train_tiny_bundle(tape: Path, models_dir: Path, symbol: str, threshold: float = 0.5) -> Path:
    """Train a small real LightGBM model on the tape's rows (close higher in 30 s?) and promote it."""
    import numpy as np

    from engine.replay import replay_tape
    from strategy.features import FeatureSetSpec, compile_feature_set, compute_batch
    from strategy.models import LightGBMParams, write_bundle
    from strategy.models.train import fit_lightgbm

    rows = replay_tape(tape, parse_config({}).fold).rows
    rows = rows[rows["symbol"] == symbol].reset_index(drop=True)
    plan = compile_feature_set(FeatureSetSpec.model_validate(FAST_SET))
    features = compute_batch(rows, plan).to_numpy(dtype=np.float64)
    close = rows["close"].to_numpy(dtype=np.float64)
    future = np.roll(close, -HORIZON_S)
    usable = np.arange(plan.warmup_rows - 1, len(rows) - HORIZON_S)
    labels = (future[usable] > close[usable]).astype(np.float64)
    params = LightGBMParams(num_boost_round=15, num_leaves=8, min_data_in_leaf=10, num_threads=1)
    booster = fit_lightgbm(features[usable], labels, plan.columns, params)
    bundle_dir = models_dir / symbol / "up"
    write_bundle(
        bundle_dir,
        booster.model_to_string(),
        symbol=symbol,
        plan=plan,
        label={"name": "up", "kind": "test", "side": 1, "horizon_rows": HORIZON_S},
        threshold=threshold,
        training={"rows": len(usable)},
        metrics={},
    )
    return bundle_dir


def model_overrides(models_dir: Path) -> dict:
    """Config sections that score the fast feature set with the bundles in models_dir."""
    return {"features": {"sets": [FAST_SET]}, "models": {"dir": str(models_dir)}}


def build_fed_app(
    tapes: Sequence[Path],
    raw: dict | None = None,
    *,
    limit: int | None = None,
    setup: Callable[[App], None] | None = None,
) -> App:
    """Build an App for tapes (trading on the simulated venue in paper/backtest modes) and feed it
    the tapes' frames in receive order on a replay clock, as the backtest does; no sockets.

    setup(app) runs before the first frame (attach listeners there); limit caps the frames fed.
    """
    import heapq

    from engine.clock import ReplayClock
    from engine.modes import exchange_info_from_tape, trades
    from engine.tape import read_tape

    market = infer_market(tapes[0])
    symbols = [s for tape in tapes for s in tape_symbols(tape)]
    config = parse_config({"logging": {"console": "off", "file": None}, **(raw or {})})
    config = config.model_copy(
        update={
            "market": config.market.model_copy(update={"type": market, "symbols": tuple(symbols)})
        }
    )
    entries = exchange_info_from_tape(tapes, symbols, market) if trades(config) else None
    clock = ReplayClock()
    app = App(config, clock=clock, exchange_info=entries)
    if setup is not None:
        setup(app)
    frames = heapq.merge(*(read_tape(t) for t in tapes), key=lambda f: f.ts_recv_ns)
    for n, frame in enumerate(frames):
        if limit is not None and n >= limit:
            break
        if frame.snapshot_symbol is None and b"@bookTicker" in frame.payload[:80]:
            continue  # not subscribed by the App (as the backtest skips it)
        clock.advance_to(frame.ts_recv_ns)
        if frame.snapshot_symbol is not None:
            app.sink.on_snapshot(frame.snapshot_symbol, frame.payload, frame.ts_recv_ns)
        else:
            app.sink.on_frame(frame.payload, frame.ts_recv_ns)
    return app
