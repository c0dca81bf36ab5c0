"""The other market's prices for the spot-futures spread filter: polled, parsed, degrading to neutral."""

from __future__ import annotations

import socket
from decimal import Decimal as D

import aiohttp
import structlog
from aiohttp import web

from engine.clock import ReplayClock
from engine.events import TradePrinted
from engine.model import Market
from engine.othermarket import OtherMarketPrices, parse_prices


def test_parse_prices_keeps_wanted_positive_prices_only() -> None:
    body = [{"symbol": "BTCUSDT", "price": "61800.10"}, {"symbol": "ETHUSDT", "price": "2600"},
            {"symbol": "XRPUSDT", "price": "0.5"}, {"symbol": "BADUSDT", "price": "-1"}, "junk"]
    assert parse_prices(body, {"BTCUSDT", "ETHUSDT", "BADUSDT"}) == {"BTCUSDT": 61800.10, "ETHUSDT": 2600.0}
    assert parse_prices({"symbol": "BTCUSDT", "price": "1.5"}, {"BTCUSDT"}) == {"BTCUSDT": 1.5}
    assert parse_prices({"code": -1121, "msg": "Invalid symbol."}, {"BTCUSDT"}) == {}


async def test_polls_the_futures_ticker_and_warns_once_when_it_is_gone() -> None:
    async def ticker(request: web.Request) -> web.Response:
        return web.json_response([{"symbol": "BTCUSDT", "price": "61805.5"}])

    app = web.Application()
    app.router.add_get("/fapi/v1/ticker/price", ticker)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    poller = OtherMarketPrices(Market.USDM, f"http://127.0.0.1:{port}", ["BTCUSDT"], ReplayClock())
    async with aiohttp.ClientSession() as http:
        assert await poller.fetch_once(http) == {"BTCUSDT": 61805.5}
        await runner.cleanup()  # the market goes away
        with structlog.testing.capture_logs() as logs:
            assert await poller.fetch_once(http) == {}
            assert await poller.fetch_once(http) == {}
    assert poller.failures == 2
    assert [e["event"] for e in logs] == ["other_market_unreachable"]  # said once


def test_trading_context_pairs_own_and_other_market_prices() -> None:
    from test_trading_risk import T0, Harness

    h = Harness()  # a spot engine
    h.market(T0, "100")
    h.loop.on_trade(TradePrinted("BTCUSDT", T0 + 500, T0 + 500, 0, 1, 100.0, 1.0, False))
    assert h.loop.context(T0 + 500).market == {}
    h.loop.on_other_market_price("BTCUSDT", 100.3)  # futures 30 bp above spot
    context = h.loop.context(T0 + 600).market["BTCUSDT"]
    assert (context.spot_price, context.futures_price) == (100.0, 100.3)
    assert context.prices_ts_ms == T0 + 500  # the older of the two prices
    assert D(repr(context.futures_price)) > D(repr(context.spot_price))
