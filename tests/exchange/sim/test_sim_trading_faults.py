"""Trading faults and user streams of the simulator: unknown outcomes, held responses, duplicate
answers, 429/418, -1021, listenKey expiry, dropped user streams, spot WS API events."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from decimal import Decimal

import aiohttp
import pytest
from sim_trading_harness import Client, run_to_diff

from exchange.sim.server import SimServer
from exchange.sim.timeline import Timeline
from exchange.sim.trading import TEST_API_KEY, TEST_API_SECRET


@pytest.fixture
async def spot(spot_timeline: Timeline) -> AsyncIterator[Client]:
    async with (
        SimServer(spot_timeline, speed=0, autostart=False, trading=True) as sim,
        aiohttp.ClientSession() as http,
    ):
        await run_to_diff(sim, 30)
        yield Client(sim, http)


@pytest.fixture
async def usdm(usdm_timeline: Timeline) -> AsyncIterator[Client]:
    async with (
        SimServer(usdm_timeline, speed=0, autostart=False, trading=True) as sim,
        aiohttp.ClientSession() as http,
    ):
        await run_to_diff(sim, 30)
        yield Client(sim, http)


async def inject(client: Client, kind: str, **params: object) -> None:
    async with client.http.post(
        f"{client.sim.base_http}/_sim/fault", json={"kind": kind, **params}
    ) as resp:
        assert resp.status == 200, await resp.text()


def resting_buy(client: Client, client_id: str, market: str = "spot") -> dict:
    bids, _ = client.sim.book_levels("BTCUSDT", depth=1)
    qty = "0.001" if market == "spot" else "0.01"
    return {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
            "quantity": qty, "price": str(bids[0][0] - 2000), "newClientOrderId": client_id}  # fmt: skip


async def test_unknown_outcome_503_the_order_was_placed(usdm: Client) -> None:
    await inject(usdm, "order_unknown")
    status, body, _ = await usdm.call("POST", "/fapi/v1/order", resting_buy(usdm, "u-1", "usdm"))
    assert status == 503
    assert body == {
        "code": -1000,
        "msg": "Unknown error, please check your request or try again later.",
    }
    status, order, _ = await usdm.call(
        "GET", "/fapi/v1/order", {"symbol": "BTCUSDT", "origClientOrderId": "u-1"}
    )
    assert status == 200 and order["status"] == "NEW"


async def test_spot_unknown_outcome_then_resend_gets_duplicate(spot: Client) -> None:
    spot.sim.trading.faults.order_unknown()  # programmatic form
    params = resting_buy(spot, "u-2")
    status, body, _ = await spot.call("POST", "/api/v3/order", params)
    assert (status, body["code"]) == (503, -1007)
    status, body, _ = await spot.call("POST", "/api/v3/order", params)  # a blind resend
    assert (status, body["code"]) == (400, -2010)
    _, opened, _ = await spot.call("GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"})
    assert [o["clientOrderId"] for o in opened] == ["u-2"]


async def test_held_response_times_out_but_the_order_exists(spot: Client) -> None:
    await inject(spot, "order_timeout", seconds=2.0)
    with pytest.raises(TimeoutError):
        await spot.call("POST", "/api/v3/order", resting_buy(spot, "t-1"), timeout_s=0.3)
    status, order, _ = await spot.call(
        "GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "t-1"}
    )
    assert status == 200 and order["status"] == "NEW"


async def test_duplicate_answer_while_the_first_attempt_landed(usdm: Client) -> None:
    await inject(usdm, "duplicate_ack")
    status, body, _ = await usdm.call("POST", "/fapi/v1/order", resting_buy(usdm, "dup-1", "usdm"))
    assert (status, body["code"]) == (400, -4116)
    _, opened, _ = await usdm.call("GET", "/fapi/v1/openOrders", {"symbol": "BTCUSDT"})
    assert [o["clientOrderId"] for o in opened] == ["dup-1"]


async def test_429_and_418_carry_retry_after_and_place_nothing(spot: Client) -> None:
    await inject(spot, "http_error", status=429)
    status, body, headers = await spot.call("POST", "/api/v3/order", resting_buy(spot, "r-1"))
    assert (status, body["code"]) == (429, -1003) and int(headers["Retry-After"]) > 0
    await inject(spot, "http_error", status=418)
    status, body, headers = await spot.call("GET", "/api/v3/account")
    assert (status, body["code"]) == (418, -1003) and int(headers["Retry-After"]) > 0
    _, opened, _ = await spot.call("GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"})
    assert opened == []


async def test_injected_timestamp_error_places_nothing(spot: Client) -> None:
    await inject(spot, "timestamp_error")
    status, body, _ = await spot.call("POST", "/api/v3/order", resting_buy(spot, "ts-1"))
    assert (status, body["code"]) == (400, -1021)
    status, _, _ = await spot.call("POST", "/api/v3/order", resting_buy(spot, "ts-1"))
    assert status == 200


async def test_listen_key_expiry_is_announced_and_keepalive_fails(usdm: Client) -> None:
    headers = {"X-MBX-APIKEY": TEST_API_KEY}
    base = usdm.sim.base_http
    async with usdm.http.post(f"{base}/fapi/v1/listenKey", headers=headers) as resp:
        key = (await resp.json())["listenKey"]
    async with usdm.http.put(f"{base}/fapi/v1/listenKey", headers=headers) as resp:
        assert (await resp.json()) == {"listenKey": key}
    ws = await usdm.http.ws_connect(f"{usdm.sim.base_ws}/private/stream?listenKey={key}")
    await inject(usdm, "listen_key_expire")
    msg = await asyncio.wait_for(ws.receive(), 10)
    envelope = json.loads(msg.data)
    assert envelope["stream"] == key
    assert envelope["data"]["e"] == "listenKeyExpired" and envelope["data"]["listenKey"] == key
    async with usdm.http.put(f"{base}/fapi/v1/listenKey", headers=headers) as resp:
        assert resp.status == 400 and (await resp.json())["code"] == -1125
    # no more events on the expired key although the socket stays open
    await usdm.call("POST", "/fapi/v1/order", resting_buy(usdm, "after-expiry", "usdm"))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ws.receive(), 0.5)
    await ws.close()


async def test_user_stream_drop_closes_the_socket(usdm: Client) -> None:
    async with usdm.http.post(
        f"{usdm.sim.base_http}/fapi/v1/listenKey", headers={"X-MBX-APIKEY": TEST_API_KEY}
    ) as resp:
        key = (await resp.json())["listenKey"]
    ws = await usdm.http.ws_connect(f"{usdm.sim.base_ws}/private/ws/{key}")
    await inject(usdm, "user_stream_drop")
    msg = await asyncio.wait_for(ws.receive(), 10)
    assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE)


def ws_api_signature(params: dict[str, object], secret: str = TEST_API_SECRET) -> str:
    payload = "&".join(f"{k}={params[k]}" for k in sorted(params))
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


async def test_spot_ws_api_subscription_delivers_execution_reports(spot: Client) -> None:
    ws = await spot.http.ws_connect(f"{spot.sim.base_ws}/ws-api/v3")
    params: dict[str, object] = {"apiKey": TEST_API_KEY, "timestamp": spot.sim.server_time_ms()}
    bad = {**params, "signature": ws_api_signature(params, "wrong")}
    await ws.send_str(
        json.dumps({"id": 1, "method": "userDataStream.subscribe.signature", "params": bad})
    )
    reply = json.loads((await asyncio.wait_for(ws.receive(), 10)).data)
    assert reply["status"] == 400 and reply["error"]["code"] == -1022
    good = {**params, "signature": ws_api_signature(params)}
    await ws.send_str(
        json.dumps({"id": 2, "method": "userDataStream.subscribe.signature", "params": good})
    )
    reply = json.loads((await asyncio.wait_for(ws.receive(), 10)).data)
    assert reply["id"] == 2 and reply["status"] == 200
    sub_id = reply["result"]["subscriptionId"]

    status, placed, _ = await spot.call(
        "POST", "/api/v3/order",
        {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.002",
         "newClientOrderId": "ws-1"},
    )  # fmt: skip
    assert status == 200
    events = []
    while not any(e["e"] == "outboundAccountPosition" for e in events):
        msg = json.loads((await asyncio.wait_for(ws.receive(), 10)).data)
        assert msg["subscriptionId"] == sub_id
        events.append(msg["event"])
    reports = [e for e in events if e["e"] == "executionReport"]
    assert reports[0]["x"] == "NEW" and reports[-1]["X"] == "FILLED"
    assert all(r["c"] == "ws-1" and r["i"] == placed["orderId"] for r in reports)
    fills = [(r["L"], r["l"]) for r in reports if r["x"] == "TRADE"]
    assert fills == [(f["price"], f["qty"]) for f in placed["fills"]]
    position = events[-1]
    btc = next(b for b in position["B"] if b["a"] == "BTC")
    assert Decimal(btc["f"]) == Decimal(10) - Decimal("0.002")
    await ws.close()
