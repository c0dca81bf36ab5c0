"""The live path over real loopback sockets: engine <-> simulator replaying the shared tapes.

After every depth event the engine applies, its book equals the simulator's book at the same
update id; with injected gaps, duplicates and drops it detects, resyncs and is equal again; a
silent stall triggers a reconnect; and the rows it folds live equal `tickloop replay` of the tape.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.app import App
from engine.config import parse_config
from engine.fold import ROW_COLUMNS
from engine.replay import replay_tape
from exchange.sim.server import SimServer
from live_harness import assert_books_equal, live_run

# real sockets at 100x tape speed: timing depends on machine load, equality never does
pytestmark = pytest.mark.flaky(reruns=2)


@pytest.mark.parametrize("name", ["spot_btcusdt", "usdm_btcusdt"])
async def test_engine_book_equals_sim_book_after_every_depth_event(tapes: dict[str, Path], name: str) -> None:
    run = await live_run(tapes[name])
    depth_events = run.app.pipeline.decoder.counters["depthUpdate"]
    assert_books_equal(run, min_compared=int(depth_events * 0.95))
    state = next(iter(run.app.pipeline.symbols.values()))
    assert state.gaps == 0 and state.book_valid


async def test_gaps_duplicates_and_drops_are_detected_and_resynced(tapes: dict[str, Path]) -> None:
    async def valid_again(app: App) -> None:
        state = app.pipeline.symbols["BTCUSDT"]
        while not state.book_valid:  # inject each fault into a live book, so each one counts
            await asyncio.sleep(0.02)

    async def chaos(sim: SimServer, app: App) -> None:
        await asyncio.sleep(0.6)
        for step in range(3):
            await valid_again(app)
            sim.faults.gap("BTCUSDT")
            await asyncio.sleep(0.3)
            await valid_again(app)
            sim.faults.duplicate("BTCUSDT", n=5)
            await asyncio.sleep(0.3)
            if step == 1:
                await valid_again(app)
                sim.faults.drop_connections()
                await asyncio.sleep(0.3)

    run = await live_run(tapes["spot_btcusdt"], chaos=chaos)
    state = run.app.pipeline.symbols["BTCUSDT"]
    counters = state.sync.counters
    assert counters.gaps >= 3, counters
    assert counters.stale_ignored >= 1, counters  # duplicates are ignored, not gaps
    assert counters.invalidations >= 1, counters  # the drop invalidated the book
    assert state.snapshot_requests >= 5
    assert state.book_valid, "the book must be valid again after the faults"
    assert_books_equal(run, min_compared=1500)
    # rows saw the resyncs and the book was NaN while invalid
    assert run.rows is not None and run.rows["resyncs"].sum() >= 3


async def test_silent_stall_triggers_reconnect(tapes: dict[str, Path]) -> None:
    async def chaos(sim: SimServer, app: App) -> None:
        await asyncio.sleep(0.8)
        sim.faults.stall(2.0, pings=False)

    run = await live_run(
        tapes["spot_btcusdt"], overrides={"streams": {"stall_timeout_s": {"depth": 0.5}}}, chaos=chaos
    )
    (session,) = run.app.feed.sessions  # type: ignore[union-attr]
    stats = session.stats_fields()
    assert stats["stalls"] >= 1 and stats["reconnects"] >= 1, stats
    state = run.app.pipeline.symbols["BTCUSDT"]
    assert state.sync.counters.invalidations >= 1 and state.book_valid
    # how many diffs the stall and the reconnect cost depends on machine load; what matters is
    # that every book compared (before and after the reconnect) equals the simulator's
    assert_books_equal(run, min_compared=1000)


@pytest.mark.parametrize("name", ["spot_btcusdt", "usdm_btcusdt"])
async def test_live_rows_equal_replay_rows(tapes: dict[str, Path], name: str) -> None:
    live = (await live_run(tapes[name])).rows
    offline = replay_tape(tapes[name], parse_config({}).fold).rows
    assert live is not None
    assert list(live["ts"]) == list(offline["ts"])
    trade_cols = ["open", "high", "low", "close", "vwap", "volume", "quote_volume", "trades", "buy_volume", "sell_volume"]
    pd.testing.assert_frame_equal(live[trade_cols], offline[trade_cols], check_exact=True)
    # book columns: the live engine synced from a REST snapshot at another moment than the tape's
    # recorded one, so compare wherever both books were valid (all but the first second or two)
    both = live["book_valid"].to_numpy() & offline["book_valid"].to_numpy()
    # at speed 100 a slow snapshot round trip costs seconds of tape before the live book syncs
    assert both.sum() >= 300 and both.mean() > 0.9
    book_cols = ["bid", "ask"]
    if name.startswith("spot"):
        # USDⓈ-M snapshots stop at 1000 levels, ~0.2 % of a BTCUSDT book at tick 0.1: levels
        # beyond are unknown until they change, so deep bands depend on *when* the snapshot was
        # taken (the tape's vs the simulator's). Spot snapshots (5000 levels) cover every band.
        book_cols += [c for c in ROW_COLUMNS if "depth" in c]
    for col in book_cols:
        np.testing.assert_allclose(live[col].to_numpy()[both], offline[col].to_numpy()[both], rtol=1e-9, atol=0)
