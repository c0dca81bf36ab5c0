"""USDⓈ-M trading over the loopback simulator: orders, algo stops, account, user data stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal

import aiohttp
import pytest
from sim_trading_harness import Client, commission, run_to_diff, tape_trades, walk

from exchange.sim.server import SimServer
from exchange.sim.timeline import Timeline
from exchange.sim.trading import TEST_API_KEY

TAKER = Decimal("0.0005")


@pytest.fixture
async def usdm(usdm_timeline: Timeline) -> AsyncIterator[Client]:
    async with (
        SimServer(usdm_timeline, speed=0, autostart=False, trading=True) as sim,
        aiohttp.ClientSession() as http,
    ):
        await run_to_diff(sim, 50)
        yield Client(sim, http)


async def listen(client: Client) -> tuple[str, aiohttp.ClientWebSocketResponse]:
    async with client.http.post(
        f"{client.sim.base_http}/fapi/v1/listenKey", headers={"X-MBX-APIKEY": TEST_API_KEY}
    ) as resp:
        key = (await resp.json())["listenKey"]
    ws = await client.http.ws_connect(f"{client.sim.base_ws}/private/ws?listenKey={key}")
    return key, ws


async def events_until(ws: aiohttp.ClientWebSocketResponse, done) -> list[dict]:  # type: ignore[no-untyped-def]
    seen: list[dict] = []
    while not done(seen):
        msg = await asyncio.wait_for(ws.receive(), 10)
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        seen.append(json.loads(msg.data))
    return seen


async def test_conditional_types_are_refused_on_the_order_endpoint(usdm: Client) -> None:
    status, body, _ = await usdm.call(
        "POST", "/fapi/v1/order",
        {"symbol": "BTCUSDT", "side": "SELL", "type": "STOP_MARKET", "quantity": "0.01",
         "stopPrice": "50000"},
    )  # fmt: skip
    assert (status, body["code"]) == (400, -4120)


async def test_algo_stop_closes_the_position_when_replayed_trades_reach_it(usdm: Client) -> None:
    sim = usdm.sim
    _, ws = await listen(usdm)
    _, asks = sim.book_levels("BTCUSDT", depth=20)
    expected_entry = walk(asks, Decimal("0.01"), Decimal("0.001"))
    status, entry, _ = await usdm.call(
        "POST", "/fapi/v1/order",
        {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01",
         "newClientOrderId": "entry-1", "newOrderRespType": "RESULT"},
    )  # fmt: skip
    assert status == 200 and entry["status"] == "FILLED"
    entry_price = Decimal(entry["avgPrice"])
    assert entry_price == sum(p * q for p, q in expected_entry) / Decimal("0.01")
    _, risk, _ = await usdm.call("GET", "/fapi/v3/positionRisk", {"symbol": "BTCUSDT"})
    assert Decimal(risk[0]["positionAmt"]) == Decimal("0.01")

    last = Decimal(tape_trades(sim, after_position=False)[-1]["p"])
    low_later = min(Decimal(t["p"]) for t in tape_trades(sim, after_position=True))
    trigger = (low_later + (last - low_later) / 4).quantize(Decimal("0.1"))
    assert low_later < trigger < last
    status, algo, _ = await usdm.call(
        "POST", "/fapi/v1/algoOrder",
        {"algoType": "CONDITIONAL", "symbol": "BTCUSDT", "side": "SELL", "type": "STOP_MARKET",
         "triggerPrice": str(trigger), "closePosition": "true", "clientAlgoId": "sl-1"},
    )  # fmt: skip
    assert status == 200 and algo["algoStatus"] == "NEW"
    _, open_algos, _ = await usdm.call("GET", "/fapi/v1/openAlgoOrders")
    assert [a["clientAlgoId"] for a in open_algos] == ["sl-1"]

    sim.resume()
    seen = await events_until(
        ws,
        lambda s: (
            any(e["e"] == "ALGO_UPDATE" and e["o"]["X"] == "FINISHED" for e in s)
            and any(e["e"] == "ACCOUNT_UPDATE" and e["a"]["P"][0]["pa"] == "0" for e in s)
        ),
    )
    await ws.close()
    algo_states = [e["o"]["X"] for e in seen if e["e"] == "ALGO_UPDATE"]
    assert algo_states == ["NEW", "TRIGGERED", "FINISHED"]
    trades = [e["o"] for e in seen if e["e"] == "ORDER_TRADE_UPDATE" and e["o"]["x"] == "TRADE"]
    entry_trades = [t for t in trades if t["c"] == "entry-1"]
    stop_trades = [t for t in trades if t["c"] == "sl-1"]
    assert sum(Decimal(t["l"]) for t in entry_trades) == Decimal("0.01")
    assert (
        stop_trades and stop_trades[-1]["X"] == "FILLED" and stop_trades[0]["ot"] == "STOP_MARKET"
    )
    assert sum(Decimal(t["l"]) for t in stop_trades) == Decimal("0.01")
    for t in stop_trades:
        assert Decimal(t["rp"]) == (Decimal(t["L"]) - entry_price) * Decimal(t["l"])
        assert Decimal(t["n"]) == commission(Decimal(t["L"]), Decimal(t["l"]), TAKER)
    updates = [e for e in seen if e["e"] == "ACCOUNT_UPDATE"]
    assert updates and updates[-1]["a"]["P"][0]["pa"] == "0"

    status, final, _ = await usdm.call("GET", "/fapi/v1/algoOrder", {"clientAlgoId": "sl-1"})
    assert final["algoStatus"] == "FINISHED" and final["actualOrderId"]
    status, order, _ = await usdm.call(
        "GET", "/fapi/v1/order", {"symbol": "BTCUSDT", "orderId": final["actualOrderId"]}
    )
    assert order["status"] == "FILLED" and order["origType"] == "STOP_MARKET"
    _, risk, _ = await usdm.call("GET", "/fapi/v3/positionRisk", {"symbol": "BTCUSDT"})
    assert risk == []


async def test_duplicate_client_id_among_open_orders_is_rejected(usdm: Client) -> None:
    bids, _ = usdm.sim.book_levels("BTCUSDT", depth=1)
    params = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
              "quantity": "0.01", "price": str(bids[0][0] - 3000), "newClientOrderId": "d-1"}  # fmt: skip
    status, _, _ = await usdm.call("POST", "/fapi/v1/order", params)
    assert status == 200
    status, body, _ = await usdm.call("POST", "/fapi/v1/order", params)
    assert (status, body["code"]) == (400, -4116)
    _, opened, _ = await usdm.call("GET", "/fapi/v1/openOrders", {"symbol": "BTCUSDT"})
    assert [o["clientOrderId"] for o in opened] == ["d-1"]


async def test_account_leverage_margin_type_and_position_mode(usdm: Client) -> None:
    status, body, _ = await usdm.call(
        "POST", "/fapi/v1/leverage", {"symbol": "BTCUSDT", "leverage": 5}
    )
    assert (status, body["leverage"]) == (200, 5)
    status, body, _ = await usdm.call(
        "POST", "/fapi/v1/marginType", {"symbol": "BTCUSDT", "marginType": "CROSSED"}
    )
    assert (status, body["code"]) == (400, -4046)
    status, body, _ = await usdm.call("GET", "/fapi/v1/positionSide/dual")
    assert body == {"dualSidePosition": False}
    status, body, _ = await usdm.call(
        "POST", "/fapi/v1/positionSide/dual", {"dualSidePosition": "false"}
    )
    assert (status, body["code"]) == (400, -4059)
    status, account, _ = await usdm.call("GET", "/fapi/v3/account")
    assert Decimal(account["totalWalletBalance"]) == Decimal(1_000_000)
    status, body, _ = await usdm.call(
        "POST", "/fapi/v1/countdownCancelAll", {"symbol": "BTCUSDT", "countdownTime": 120000}
    )
    assert body == {"symbol": "BTCUSDT", "countdownTime": "120000"}
