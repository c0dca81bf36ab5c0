"""Harness for tests of the live path: a real App against the loopback simulator, over sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pandas as pd

from engine.app import App
from engine.commands import fetch_tick_sizes, point_at
from engine.config import Config, parse_config
from engine.fold import ROW_COLUMNS
from engine.marketdata import SymbolMarketData
from engine.replay import RingCollector
from engine.tape import infer_market, tape_symbols
from exchange.sim.server import SimServer

DEPTH = 300  # levels per side compared (the futures snapshot limit is 1000, the sim may hold more)

Levels = tuple[tuple[tuple[Decimal, Decimal], ...], tuple[tuple[Decimal, Decimal], ...]]


@dataclass
class LiveRun:
    app: App
    sim_books: dict[tuple[str, int], Levels] = field(default_factory=dict)
    engine_books: dict[tuple[str, int], Levels] = field(default_factory=dict)
    rows: pd.DataFrame | None = None


def _engine_levels(state: SymbolMarketData) -> Levels:
    def side(name: str) -> tuple[tuple[Decimal, Decimal], ...]:
        return tuple((Decimal(repr(p)), Decimal(repr(q))) for p, q in state.book.levels(name, DEPTH))
    return side("bid"), side("ask")


def _norm(levels: list[tuple[Decimal, Decimal]]) -> tuple[tuple[Decimal, Decimal], ...]:
    return tuple((p.normalize(), q.normalize()) for p, q in levels)


async def live_run(
    tape: Path,
    *,
    speed: float = 100.0,
    overrides: dict | None = None,
    chaos: Callable[[SimServer, App], Awaitable[None]] | None = None,
    on_app: Callable[[App], None] | None = None,
    app_kwargs: dict | None = None,
) -> LiveRun:
    market = infer_market(tape)
    symbols = tape_symbols(tape)
    raw = {"logging": {"console": "off", "file": None},
           "book": {"snapshot_limit": 5000 if market.value == "spot" else 1000, "min_resync_interval_s": 0.05}}
    for key, value in (overrides or {}).items():
        if isinstance(value, dict):
            raw.setdefault(key, {}).update(value)
        else:
            raw[key] = value
    async with SimServer([tape], speed=speed) as sim:
        config: Config = point_at(parse_config(raw), sim.base_http, sim.base_ws, market, symbols)
        collector = RingCollector()
        run = LiveRun(app=None)  # type: ignore[arg-type]

        def on_book(state: SymbolMarketData) -> None:
            run.engine_books[(state.symbol, state.sync.last_update_id)] = _engine_levels(state)

        def on_sent(symbol: str, final_update_id: int) -> None:
            bids, asks = sim.book_levels(symbol, depth=DEPTH)
            run.sim_books[(symbol, final_update_id)] = (_norm(bids), _norm(asks))

        sim.on_depth_sent(on_sent)
        app = App(config, tick_sizes=await fetch_tick_sizes(config), on_book_changed=on_book, **(app_kwargs or {}))
        app.add_row_hook(collector)
        run.app = app
        if on_app is not None:
            on_app(app)

        async def stop_at_end() -> None:
            await sim.wait_finished()
            await asyncio.sleep(0.5)
            app.stop()

        async with asyncio.TaskGroup() as tg:
            tg.create_task(stop_at_end())
            if chaos is not None:
                tg.create_task(chaos(sim, app))
            await asyncio.wait_for(app.run(), timeout=120)
    app.pipeline.flush()
    for state in app.pipeline.symbols.values():
        collector.collect_candles(state)
    run.rows = collector.rows_frame(ROW_COLUMNS)
    return run


def assert_books_equal(run: LiveRun, min_compared: int) -> int:
    compared = 0
    for key, engine_levels in run.engine_books.items():
        sim_levels = run.sim_books.get(key)
        if sim_levels is None:
            continue  # the sim never sent this id (a skipped frame), nothing to compare with
        engine_norm = tuple(tuple((p.normalize(), q.normalize()) for p, q in side) for side in engine_levels)
        assert engine_norm == sim_levels, f"book differs at {key}"
        compared += 1
    assert compared >= min_compared, f"only {compared} depth events compared"
    return compared


