"""An order answer that is HTTP 200 but unreadable: the order may be placed, so it is looked up by
client id (never resent, never a crash). The server here is a tiny loopback Binance whose order
endpoint answers garbage once and whose query endpoint tells the truth.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from engine.clock import LiveClock
from engine.journal import Journal
from engine.model import Market, Side
from engine.orders import OrderAccepted, OrderEvent, OrderIntent, OrderRole, OrderStatus, OrderType
from exchange.binance.auth import BinanceKeys
from exchange.binance.order_manager import OrderManager, OrderManagerConfig
from exchange.binance.rest import BinanceRest
from exchange.binance.urls import BinanceEndpoints

ORDER = {"symbol": "BTCUSDT", "orderId": 42, "clientOrderId": "tl-BTCUSDT-1-en", "status": "NEW",
         "side": "BUY", "type": "LIMIT", "origQty": "0.001", "executedQty": "0", "price": "50000",
         "updateTime": 1_700_000_000_000}  # fmt: skip


@pytest.fixture(params=[b"[]", b'{"symbol": "BTCUSDT"}', b'{"orderId": 42, "origQty": "NaN"}'])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, list[str]]]:
    calls: list[str] = []

    async def time(_: web.Request) -> web.Response:
        return web.json_response({"serverTime": LiveClock().now_ns() // 1_000_000})

    async def place(_: web.Request) -> web.Response:
        calls.append("place")
        return web.Response(body=request.param, content_type="application/json")

    async def query(_: web.Request) -> web.Response:
        calls.append("query")
        return web.json_response(ORDER)

    app = web.Application()
    app.router.add_get("/api/v3/time", time)
    app.router.add_post("/api/v3/order", place)
    app.router.add_get("/api/v3/order", query)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}", calls
    await runner.cleanup()


async def test_unreadable_placement_answer_is_looked_up_not_resent(
    server: tuple[str, list[str]], tmp_path: Path
) -> None:
    base, calls = server
    clock = LiveClock()
    events: list[OrderEvent] = []
    journal = Journal.open(tmp_path / "journal.sqlite")
    async with aiohttp.ClientSession() as http:
        rest = BinanceRest(Market.SPOT, BinanceEndpoints(base, "ws://127.0.0.1:9"), clock, http,
                           BinanceKeys.hmac("k" * 64, "s" * 64))  # fmt: skip
        manager = OrderManager(rest, journal, clock, events.append,
                               OrderManagerConfig(query_backoff_s=0.01, give_up_s=5))  # fmt: skip
        intent = OrderIntent(client_order_id="tl-BTCUSDT-1-en", symbol="BTCUSDT", side=Side.BUY,
                             type=OrderType.LIMIT, quantity=Decimal("0.001"), price=Decimal("50000"),
                             role=OrderRole.ENTRY)  # fmt: skip
        status = await manager.submit(intent, 1)
    journal.close()
    assert calls[0] == "place" and calls.count("place") == 1  # never resent
    assert "query" in calls
    assert status is OrderStatus.NEW
    assert [type(e) for e in events] == [OrderAccepted]
