"""The Binance adapter against the REAL Binance testnets (off by default: no internet here).

Run on a machine with internet and testnet keys:

    TICKLOOP_TESTNET_SPOT_KEY=... TICKLOOP_TESTNET_SPOT_SECRET=... \\
    TICKLOOP_TESTNET_USDM_KEY=... TICKLOOP_TESTNET_USDM_SECRET=... \\
    pytest --run-marked testnet tests/testnet

Each test places one small LIMIT order far from the market (it cannot fill), sees it acknowledged
through the user stream (spot: WebSocket API subscription; USDⓈ-M: listenKey on /private), cancels
it and sees the cancel — the same code path as `mode: testnet`.
"""

from __future__ import annotations

import asyncio
import os
from decimal import ROUND_DOWN, Decimal
from pathlib import Path

import aiohttp
import pytest

from engine.clock import LiveClock
from engine.config import parse_config
from engine.journal import Journal
from engine.live_start import build_session, start_session
from engine.model import Market, Side
from engine.orders import OrderAccepted, OrderCanceled, OrderEvent, OrderIntent, OrderRole, OrderType
from exchange.binance.auth import BinanceKeys
from exchange.binance.urls import SPOT_TESTNET, USDM_TESTNET

pytestmark = pytest.mark.testnet

ENDPOINTS = {
    Market.SPOT: {"spot": {"rest": SPOT_TESTNET.rest_base, "ws": SPOT_TESTNET.ws_base}},
    Market.USDM: {"usdm": {"rest": USDM_TESTNET.rest_base, "ws": USDM_TESTNET.ws_base, "routed": True}},
}


def _keys(market: Market) -> BinanceKeys:
    prefix = f"TICKLOOP_TESTNET_{market.name}"
    key, secret = os.environ.get(f"{prefix}_KEY"), os.environ.get(f"{prefix}_SECRET")
    if not key or not secret:
        pytest.fail(f"set {prefix}_KEY and {prefix}_SECRET (Binance testnet keys) to run this test")
    return BinanceKeys.hmac(key, secret)


@pytest.mark.parametrize("market", [Market.SPOT, Market.USDM])
async def test_a_far_limit_order_is_acknowledged_and_cancelled_through_the_user_stream(
    market: Market, tmp_path: Path
) -> None:
    keys = _keys(market)
    config = parse_config({
        "mode": "testnet", "market": {"type": market.value, "symbols": ["BTCUSDT"]},
        "endpoints": ENDPOINTS[market], "logging": {"console": "off", "file": None},
    })  # fmt: skip
    clock = LiveClock()
    journal = Journal.open(tmp_path / "journal.sqlite")
    events: list[OrderEvent] = []
    async with aiohttp.ClientSession() as http, asyncio.TaskGroup() as tg:
        session = build_session(config, clock, http, journal, keys)
        session.venue.set_listener(events.extend)
        tasks = [tg.create_task(session.venue.run()), tg.create_task(session.stream.run())]
        await start_session(session, config, journal, clock)
        path = "/api/v3/ticker/price" if market is Market.SPOT else "/fapi/v1/ticker/price"
        price = Decimal((await session.rest.get(path, {"symbol": "BTCUSDT"}))["price"])
        intent = OrderIntent(
            client_order_id=f"tl-BTCUSDT-{clock.now_ns() // 1_000_000 % 10**9}-en", symbol="BTCUSDT",
            side=Side.BUY, type=OrderType.LIMIT, role=OrderRole.ENTRY,
            quantity=Decimal("0.002"), price=(price * Decimal("0.8")).quantize(Decimal("0.1"), ROUND_DOWN),
        )  # fmt: skip
        journal.record_intent(intent, 0)
        session.venue.submit(intent, 0)
        async with asyncio.timeout(20):
            while not any(isinstance(e, OrderAccepted) for e in events):
                await asyncio.sleep(0.05)
        session.venue.cancel("BTCUSDT", intent.client_order_id, 0)
        async with asyncio.timeout(20):
            while not any(isinstance(e, OrderCanceled) for e in events):
                await asyncio.sleep(0.05)
        await session.venue.close()
        for task in tasks:
            task.cancel()
    journal.close()
    assert [type(e).__name__ for e in events] == ["OrderAccepted", "OrderCanceled"]
