"""Trading over the loopback simulator: signed requests, fills against the replayed book, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import aiohttp
import pytest
from sim_trading_harness import Client, commission, run_to_diff, tape_trades, walk

from exchange.sim.server import SimServer
from exchange.sim.timeline import Timeline
from exchange.sim.trading import TEST_API_KEY

SPOT_STEP = Decimal("0.00001")
SPOT_FEE = Decimal("0.001")


@pytest.fixture
async def spot(spot_timeline: Timeline) -> AsyncIterator[Client]:
    async with (
        SimServer(spot_timeline, speed=0, autostart=False, trading=True) as sim,
        aiohttp.ClientSession() as http,
    ):
        await run_to_diff(sim, 50)
        yield Client(sim, http)


async def test_market_buy_walks_the_replayed_asks_and_pays_the_taker_fee(spot: Client) -> None:
    _, asks = spot.sim.book_levels("BTCUSDT", depth=50)
    quantity = Decimal("3.5")
    expected = walk(asks, quantity, SPOT_STEP)
    assert len(expected) > 1  # the order must reach past the best level
    status, body, headers = await spot.call(
        "POST", "/api/v3/order",
        {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "3.5",
         "newClientOrderId": "mkt-1"},
    )  # fmt: skip
    assert status == 200, body
    assert body["status"] == "FILLED" and body["clientOrderId"] == "mkt-1"
    got = [(Decimal(f["price"]), Decimal(f["qty"])) for f in body["fills"]]
    assert got == expected
    assert [Decimal(f["commission"]) for f in body["fills"]] == [
        commission(p, q, SPOT_FEE) for p, q in expected
    ]
    assert Decimal(body["cummulativeQuoteQty"]) == sum(p * q for p, q in expected)
    assert headers["X-MBX-ORDER-COUNT-10S"] == "1" and "X-MBX-USED-WEIGHT-1M" in headers

    status, account, _ = await spot.call("GET", "/api/v3/account")
    balances = {b["asset"]: Decimal(b["free"]) for b in account["balances"]}
    cost = sum(p * q + commission(p, q, SPOT_FEE) for p, q in expected)
    assert balances["USDT"] == Decimal(1_000_000) - cost
    assert balances["BTC"] == Decimal(10) + quantity

    status, trades, _ = await spot.call("GET", "/api/v3/myTrades", {"symbol": "BTCUSDT"})
    assert [(Decimal(t["price"]), Decimal(t["qty"])) for t in trades] == expected
    assert all(t["isBuyer"] and not t["isMaker"] for t in trades)


async def test_resting_limit_fills_at_its_price_when_later_trades_cross_it(spot: Client) -> None:
    sim = spot.sim
    bids, _ = sim.book_levels("BTCUSDT", depth=1)
    best_bid = bids[0][0]
    sells_later = [Decimal(t["p"]) for t in tape_trades(sim, after_position=True) if t["m"]]
    limit = min(sells_later) + Decimal("1.00")  # a later sell prints strictly below it
    assert limit < best_bid  # so it rests first instead of taking
    status, body, _ = await spot.call(
        "POST", "/api/v3/order",
        {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
         "quantity": "0.01", "price": str(limit), "newClientOrderId": "rest-1"},
    )  # fmt: skip
    assert status == 200 and body["status"] == "NEW" and body["fills"] == []
    status, open_orders, _ = await spot.call("GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"})
    assert [o["clientOrderId"] for o in open_orders] == ["rest-1"]
    _, account, _ = await spot.call("GET", "/api/v3/account")
    locked = {b["asset"]: Decimal(b["locked"]) for b in account["balances"]}
    assert locked["USDT"] > 0

    sim.resume()
    await sim.wait_finished()
    status, order, _ = await spot.call(
        "GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "rest-1"}
    )
    assert order["status"] == "FILLED" and Decimal(order["executedQty"]) == Decimal("0.01")
    _, trades, _ = await spot.call("GET", "/api/v3/myTrades", {"symbol": "BTCUSDT"})
    assert [(Decimal(t["price"]), t["isMaker"]) for t in trades] == [(limit, True)] * len(trades)
    assert sum(Decimal(t["qty"]) for t in trades) == Decimal("0.01")
    assert sum(Decimal(t["commission"]) for t in trades) == commission(
        limit, Decimal("0.01"), SPOT_FEE
    )


async def test_cancel_then_query_and_unknown_order(spot: Client) -> None:
    bids, _ = spot.sim.book_levels("BTCUSDT", depth=1)
    far = bids[0][0] - Decimal(5000)
    params = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
              "quantity": "0.001", "price": str(far), "newClientOrderId": "c-1"}  # fmt: skip
    status, placed, _ = await spot.call("POST", "/api/v3/order", params)
    assert status == 200
    status, dup, _ = await spot.call("POST", "/api/v3/order", params)
    assert (status, dup) == (400, {"code": -2010, "msg": "Duplicate order sent."})
    status, canceled, _ = await spot.call(
        "DELETE", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": placed["orderId"]}
    )
    assert status == 200 and canceled["status"] == "CANCELED"
    assert canceled["origClientOrderId"] == "c-1"
    status, again, _ = await spot.call(
        "DELETE", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "c-1"}
    )
    assert (status, again["code"]) == (400, -2011)
    status, missing, _ = await spot.call(
        "GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "never"}
    )
    assert (status, missing["code"]) == (400, -2013)
    # the id may be reused once the first order is no longer open
    status, reused, _ = await spot.call("POST", "/api/v3/order", params)
    assert status == 200 and reused["orderId"] != placed["orderId"]


async def test_signed_request_checks(spot: Client) -> None:
    account = "/api/v3/account"
    status, body, _ = await spot.call("GET", account, secret="not-the-secret")
    assert (status, body["code"]) == (400, -1022)
    status, body, _ = await spot.call("GET", account, key=None)
    assert (status, body["code"]) == (401, -2014)
    status, body, _ = await spot.call("GET", account, key="unknown-key")
    assert (status, body["code"]) == (401, -2015)
    now = spot.sim.server_time_ms()
    status, body, _ = await spot.call("GET", account, timestamp_ms=now - 6000)
    assert (status, body["code"]) == (400, -1021)
    status, body, _ = await spot.call("GET", account, timestamp_ms=now + 1500)
    assert (status, body["code"]) == (400, -1021)
    status, body, _ = await spot.call(
        "GET", account, {"recvWindow": 10_000}, timestamp_ms=now - 6000
    )
    assert status == 200
    # the signature covers the bytes sent: a parameter added after signing breaks it
    from sim_trading_harness import signed_query

    query = signed_query({"timestamp": now}) + "&omitZeroBalances=true"
    async with spot.http.get(
        f"{spot.sim.base_http}{account}?{query}", headers={"X-MBX-APIKEY": TEST_API_KEY}
    ) as resp:
        assert (resp.status, (await resp.json())["code"]) == (400, -1022)


async def test_parameter_and_filter_errors(spot: Client) -> None:
    order = "/api/v3/order"
    base = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
            "quantity": "0.001", "price": "50000.00"}  # fmt: skip
    cases = [
        ({**base, "symbol": "NOPEUSDT"}, -1121),
        ({k: v for k, v in base.items() if k != "price"}, -1102),
        ({**base, "type": "MARKET", "timeInForce": None}, -1106),  # price with MARKET
        ({**base, "price": "50000.005"}, -1013),  # off the 0.01 tick
        ({**base, "quantity": "0.000001"}, -1013),  # under LOT_SIZE
        ({**base, "price": "1.00"}, -1013),  # notional under 10 USDT
        ({**base, "quantity": "100"}, -2010),  # more than the account holds
    ]
    for params, code in cases:
        params = {k: v for k, v in params.items() if v is not None}
        status, body, _ = await spot.call("POST", order, params)
        assert (status, body["code"]) == (400, code), (params, body)
    status, body, _ = await spot.call("POST", order, {**base, "price": "50000.005"})
    assert body["msg"] == "Filter failure: PRICE_FILTER"


async def test_api_restrictions_report_the_key_permissions(spot: Client) -> None:
    status, body, _ = await spot.call("GET", "/sapi/v1/account/apiRestrictions")
    assert status == 200
    assert body["enableWithdrawals"] is False and body["enableSpotAndMarginTrading"] is True


async def test_oco_list_rests_both_legs_and_one_cancel_ends_both(spot: Client) -> None:
    last = Decimal(tape_trades(spot.sim, after_position=False)[-1]["p"])
    oco = {"symbol": "BTCUSDT", "side": "SELL", "quantity": "0.01", "listClientOrderId": "bracket-1",
           "aboveType": "LIMIT_MAKER", "abovePrice": str(last + 3000), "aboveClientOrderId": "tp-1",
           "belowType": "STOP_LOSS", "belowStopPrice": str(last - 3000),
           "belowClientOrderId": "sl-1"}  # fmt: skip
    status, body, _ = await spot.call("POST", "/api/v3/orderList/oco", oco)
    assert status == 200, body
    assert body["contingencyType"] == "OCO" and body["listClientOrderId"] == "bracket-1"
    _, opened, _ = await spot.call("GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"})
    assert sorted(o["clientOrderId"] for o in opened) == ["sl-1", "tp-1"]
    assert {o["orderListId"] for o in opened} == {body["orderListId"]}
    _, account, _ = await spot.call("GET", "/api/v3/account")
    locked = {b["asset"]: Decimal(b["locked"]) for b in account["balances"]}
    assert locked["BTC"] == Decimal("0.01")  # one lock for the list, not one per leg

    status, _, _ = await spot.call(
        "DELETE", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "tp-1"}
    )
    assert status == 200
    _, opened, _ = await spot.call("GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"})
    assert opened == []

    wrong = {**oco, "abovePrice": str(last - 4000), "aboveClientOrderId": "tp-2",
             "belowClientOrderId": "sl-2"}  # fmt: skip
    status, body, _ = await spot.call("POST", "/api/v3/orderList/oco", wrong)
    assert (status, body["code"]) == (400, -2010)
