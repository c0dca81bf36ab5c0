"""Harness: a real App in mode testnet against the loopback simulator with trading on.

The engine talks to the simulator exactly as to Binance: signed REST, the spot WebSocket API user
stream (or the USDⓈ-M listenKey stream), public market-data sockets. Expected values are read from
the simulator's own records (its desk), never from the engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from engine.app import App
from engine.commands import fetch_tick_sizes, point_at
from engine.config import Config, parse_config
from engine.journal import Journal
from engine.tape import infer_market, tape_symbols
from exchange.sim.server import SimServer
from exchange.sim.trading import TEST_API_KEY, TEST_API_SECRET
from exchange.sim.trading.orders import OrderRecord


def use_sim_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Put the simulator's test key pair in the environment (and no stray .env)."""
    monkeypatch.setenv("BINANCE_API_KEY", TEST_API_KEY)
    monkeypatch.setenv("BINANCE_API_SECRET", TEST_API_SECRET)
    monkeypatch.delenv("BINANCE_PRIVATE_KEY", raising=False)
    monkeypatch.delenv("BINANCE_PRIVATE_KEY_FILE", raising=False)
    monkeypatch.chdir(tmp_path)


def sim_testnet_config(sim: SimServer, tape: Path, overrides: dict[str, Any]) -> Config:
    market = infer_market(tape)
    raw: dict[str, Any] = {
        "logging": {"console": "off", "file": None},
        "book": {"snapshot_limit": 5000 if market.value == "spot" else 1000, "min_resync_interval_s": 0.05},
    }
    for key, value in overrides.items():
        if isinstance(value, dict):
            raw.setdefault(key, {}).update(value)
        else:
            raw[key] = value
    raw["mode"] = "testnet"
    return point_at(parse_config(raw), sim.base_http, sim.base_ws, market, tape_symbols(tape))


async def run_engine(
    sim: SimServer,
    config: Config,
    journal_path: Path,
    *,
    until: Callable[[App], bool] | None = None,
    timeout_s: float = 120.0,
    on_app: Callable[[App], None] | None = None,
    after_start: Callable[[App], Awaitable[None]] | None = None,
) -> App:
    """Run one engine on journal_path until `until(app)` holds (polled) or the tape ends."""
    app = App(config, tick_sizes=await fetch_tick_sizes(config), journal_path=journal_path)
    if on_app is not None:
        on_app(app)

    async def stopper() -> None:
        while True:
            await asyncio.sleep(0.02)
            if until is not None and app.trading is not None and until(app):
                break
            if until is None and sim.replay.finished.is_set():
                await asyncio.sleep(0.5)
                break
        if after_start is not None:
            await after_start(app)
        app.stop()

    async with asyncio.TaskGroup() as tg:
        tg.create_task(stopper())
        await asyncio.wait_for(app.run(), timeout=timeout_s)
    return app


def sim_orders(sim: SimServer, spot: bool = True) -> list[OrderRecord]:
    assert sim.trading is not None
    desk = sim.trading.spot if spot else sim.trading.futures
    return list(desk.orders.values())


def journal_rows(path: Path) -> tuple[list, list]:
    journal = Journal.open(path)
    try:
        return journal.intents(), journal.fills()
    finally:
        journal.close()
