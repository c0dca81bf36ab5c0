"""Fixtures of the chaos tests' focused cases (the rig itself is chaos_rig.FrozenSpot)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from chaos_rig import FrozenSpot

from engine.clock import LiveClock
from engine.journal import Journal
from engine.model import Market
from engine.orders import OrderEvent
from exchange.binance.auth import BinanceKeys
from exchange.binance.order_manager import OrderManager, OrderManagerConfig
from exchange.binance.rest import BinanceRest
from exchange.binance.urls import BinanceEndpoints
from exchange.sim.server import SimServer
from exchange.sim.timeline import Timeline, load_timeline
from exchange.sim.trading import TEST_API_KEY, TEST_API_SECRET


@pytest.fixture(scope="module")
def spot_timeline(tapes: dict[str, Path]) -> Timeline:
    return load_timeline([tapes["spot_btcusdt"]])


@pytest.fixture(scope="module")
def usdm_timeline(tapes: dict[str, Path]) -> Timeline:
    return load_timeline([tapes["usdm_btcusdt"]])


@pytest.fixture
async def frozen_spot(spot_timeline: Timeline, tmp_path: Path) -> AsyncIterator[FrozenSpot]:
    async for rig in _frozen(spot_timeline, Market.SPOT, tmp_path):
        yield rig


@pytest.fixture
async def frozen_usdm(usdm_timeline: Timeline, tmp_path: Path) -> AsyncIterator[FrozenSpot]:
    async for rig in _frozen(usdm_timeline, Market.USDM, tmp_path):
        yield rig


async def _frozen(timeline: Timeline, market: Market, tmp_path: Path) -> AsyncIterator[FrozenSpot]:
    clock = LiveClock()
    async with (
        SimServer(timeline, speed=0, autostart=False, trading=True) as sim,
        aiohttp.ClientSession() as http,
    ):
        diffs = 0
        ready = asyncio.Event()

        def on_diff(symbol: str, final_update_id: int) -> None:
            nonlocal diffs
            diffs += 1
            if diffs == 30:  # a settled book, then a frozen market
                sim.pause()
                ready.set()

        sim.on_depth_sent(on_diff)
        sim.start()
        await ready.wait()
        endpoints = BinanceEndpoints(sim.base_http, sim.base_ws, market is Market.USDM)
        rest = BinanceRest(market, endpoints, clock, http,
                           BinanceKeys.hmac(TEST_API_KEY, TEST_API_SECRET), timeout_s=2.0)  # fmt: skip
        journal = Journal.open(tmp_path / "journal.sqlite")
        config = OrderManagerConfig(query_backoff_s=0.02, query_backoff_max_s=0.1, give_up_s=5.0)
        events: list[OrderEvent] = []
        manager = OrderManager(rest, journal, clock, events.append, config)
        yield FrozenSpot(sim, rest, manager, clock, events, market)
        journal.close()
