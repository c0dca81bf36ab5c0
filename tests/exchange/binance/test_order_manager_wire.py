"""Wire format of Binance orders (exchange/binance/orders.py) and the pure order fold.

Expected params are written out by hand from the API reference §3.5-3.7.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.model import Market, Side
from engine.orders import (
    Liquidity,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    OrderRole,
    OrderStatus,
    OrderType,
    SubmitOrderList,
    TimeInForce,
)
from exchange.binance.order_manager import TrackedOrder, fold_order
from exchange.binance.orders import (
    VenueFill,
    VenueOrder,
    oco_request,
    order_request,
    parse_algo,
    parse_order,
    parse_trades,
    plain,
    query_request,
    rejected_event,
)
from exchange.errors import Rejected, RejectReason

D = Decimal


def intent(type_: OrderType, **kw: object) -> OrderIntent:
    base: dict = {"client_order_id": "tl-BTCUSDT-7-en", "symbol": "BTCUSDT", "side": Side.BUY}
    base.update(quantity=D("0.00100"))
    base.update(kw)
    return OrderIntent(type=type_, **base)


@pytest.mark.parametrize(
    ("value", "text"),
    [(D("1E-3"), "0.001"), (D("0.00100"), "0.001"), (D("1E+2"), "100"), (D("-0"), "0")],
)
def test_plain_never_writes_exponents(value: Decimal, text: str) -> None:
    assert plain(value) == text


def test_spot_limit_and_post_only() -> None:
    req = order_request(Market.SPOT, intent(OrderType.LIMIT, price=D("60000.10")))
    assert (req.method, req.path) == ("POST", "/api/v3/order")
    assert req.params == {
        "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.001",
        "newClientOrderId": "tl-BTCUSDT-7-en", "newOrderRespType": "FULL",
        "price": "60000.1", "timeInForce": "GTC",
    }  # fmt: skip
    maker = order_request(
        Market.SPOT, intent(OrderType.LIMIT, price=D("60000"), time_in_force=TimeInForce.GTX)
    )
    assert maker.params["type"] == "LIMIT_MAKER" and "timeInForce" not in maker.params


def test_spot_stop_and_take_profit_types() -> None:
    stop_limit = intent(OrderType.STOP_LIMIT, price=D("59000"), stop_price=D("59100"))
    assert order_request(Market.SPOT, stop_limit).params == {
        "symbol": "BTCUSDT", "side": "BUY", "type": "STOP_LOSS_LIMIT", "quantity": "0.001",
        "newClientOrderId": "tl-BTCUSDT-7-en", "newOrderRespType": "FULL",
        "price": "59000", "timeInForce": "GTC", "stopPrice": "59100",
    }  # fmt: skip
    tp = order_request(Market.SPOT, intent(OrderType.TAKE_PROFIT_MARKET, stop_price=D("61000")))
    assert tp.params["type"] == "TAKE_PROFIT" and tp.params["stopPrice"] == "61000"
    assert "price" not in tp.params and "timeInForce" not in tp.params
    sl = order_request(Market.SPOT, intent(OrderType.STOP_MARKET, stop_price=D("58000")))
    assert sl.params["type"] == "STOP_LOSS"
    tpl = intent(OrderType.TAKE_PROFIT_LIMIT, price=D("61000"), stop_price=D("60900"))
    assert order_request(Market.SPOT, tpl).params["type"] == "TAKE_PROFIT_LIMIT"


def test_futures_order_and_algo_endpoints() -> None:
    mkt = order_request(Market.USDM, intent(OrderType.MARKET, reduce_only=True))
    assert (mkt.path, mkt.is_algo) == ("/fapi/v1/order", False)
    assert mkt.params == {
        "symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001",
        "newClientOrderId": "tl-BTCUSDT-7-en", "newOrderRespType": "RESULT",
        "reduceOnly": "true",
    }  # fmt: skip
    stop = intent(OrderType.STOP_MARKET, stop_price=D("58000.0"), reduce_only=True)
    algo = order_request(Market.USDM, stop)
    assert (algo.path, algo.is_algo) == ("/fapi/v1/algoOrder", True)
    assert algo.params == {
        "algoType": "CONDITIONAL", "symbol": "BTCUSDT", "side": "BUY", "type": "STOP_MARKET",
        "clientAlgoId": "tl-BTCUSDT-7-en", "workingType": "CONTRACT_PRICE",
        "quantity": "0.001", "reduceOnly": "true", "triggerPrice": "58000",
    }  # fmt: skip
    close = order_request(Market.USDM, stop, close_position=True).params
    assert close["closePosition"] == "true"
    assert "quantity" not in close and "reduceOnly" not in close
    trail = intent(
        OrderType.TRAILING_STOP_MARKET, callback_rate_pct=D("0.50"), stop_price=D("61000")
    )
    params = order_request(Market.USDM, trail).params
    assert (params["type"], params["callbackRate"], params["activatePrice"]) == (
        "TRAILING_STOP_MARKET",
        "0.5",
        "61000",
    )
    assert "triggerPrice" not in params


def test_spot_oco_puts_the_higher_leg_above() -> None:
    tp = OrderIntent(
        "tl-X-1-tp", "BTCUSDT", Side.SELL, OrderType.LIMIT, D("0.01"), price=D("62000"),
        role=OrderRole.TAKE_PROFIT,
    )  # fmt: skip
    sl = OrderIntent(
        "tl-X-1-sl", "BTCUSDT", Side.SELL, OrderType.STOP_LIMIT, D("0.01"), price=D("57900"),
        stop_price=D("58000"), role=OrderRole.STOP_LOSS,
    )  # fmt: skip
    req = oco_request(SubmitOrderList("tl-X-1-ls", (sl, tp), 0))
    assert (req.method, req.path) == ("POST", "/api/v3/orderList/oco")
    assert req.params == {
        "symbol": "BTCUSDT", "side": "SELL", "quantity": "0.01",
        "listClientOrderId": "tl-X-1-ls", "newOrderRespType": "RESULT",
        "aboveType": "LIMIT_MAKER", "aboveClientOrderId": "tl-X-1-tp", "abovePrice": "62000",
        "belowType": "STOP_LOSS_LIMIT", "belowClientOrderId": "tl-X-1-sl",
        "belowPrice": "57900", "belowStopPrice": "58000", "belowTimeInForce": "GTC",
    }  # fmt: skip


def test_query_requests() -> None:
    assert query_request(Market.SPOT, "BTCUSDT", "c1", False).params == {
        "symbol": "BTCUSDT",
        "origClientOrderId": "c1",
    }
    assert query_request(Market.USDM, "BTCUSDT", "c1", False).path == "/fapi/v1/order"
    algo = query_request(Market.USDM, "BTCUSDT", "c1", True)
    assert (algo.path, algo.params) == ("/fapi/v1/algoOrder", {"clientAlgoId": "c1"})


def test_parse_spot_full_answer() -> None:
    body = {
        "symbol": "BTCUSDT", "orderId": 28, "orderListId": -1, "clientOrderId": "c1",
        "transactTime": 1507725176595, "price": "0.00000000", "origQty": "0.30000000",
        "executedQty": "0.30000000", "status": "FILLED", "side": "BUY", "type": "MARKET",
        "fills": [
            {"price": "4000.00000000", "qty": "0.10000000", "commission": "0.00010000",
             "commissionAsset": "BTC", "tradeId": 56},
            {"price": "3999.00000000", "qty": "0.20000000", "commission": "0.00020000",
             "commissionAsset": "BTC", "tradeId": 57},
        ],
    }  # fmt: skip
    order = parse_order(Market.SPOT, body)
    assert (order.venue_order_id, order.status, order.executed_qty) == ("28", "FILLED", D("0.3"))
    assert [(f.trade_id, f.price, f.quantity) for f in order.fills] == [
        (56, D(4000), D("0.1")),
        (57, D(3999), D("0.2")),
    ]


def test_parse_algo_and_trades() -> None:
    algo = parse_algo(
        {"algoId": 9, "clientAlgoId": "a1", "symbol": "BTCUSDT", "side": "SELL",
         "quantity": "0.01", "algoStatus": "TRIGGERED", "actualOrderId": "123",
         "createTime": 5, "updateTime": 6}
    )  # fmt: skip
    assert (algo.venue_order_id, algo.actual_order_id, algo.status) == ("9", "123", "NEW")
    rows = [
        {"id": 8, "price": "10", "qty": "1", "commission": "0.1", "commissionAsset": "USDT",
         "maker": True, "time": 2},
        {"id": 7, "price": "11", "qty": "2", "commission": "0.2", "commissionAsset": "USDT",
         "maker": False, "time": 1},
    ]  # fmt: skip
    fills = parse_trades(Market.USDM, rows)
    assert [(f.trade_id, f.liquidity) for f in fills] == [(7, "taker"), (8, "maker")]


def test_rejection_reason_is_the_filter_name() -> None:
    exc = Rejected(
        RejectReason.FILTER, "Filter failure: LOT_SIZE", code=-1013, filter_name="LOT_SIZE"
    )
    event = rejected_event("BTCUSDT", "c1", exc, 5)
    assert event == OrderRejected("BTCUSDT", "c1", "LOT_SIZE", "-1013: Filter failure: LOT_SIZE", 5)
    other = rejected_event("BTCUSDT", "c1", Rejected(RejectReason.INSUFFICIENT_BALANCE, "x"), 5)
    assert other.reason == "INSUFFICIENT_BALANCE"


def _fill(trade_id: int, qty: str) -> VenueFill:
    return VenueFill(trade_id, D(100), D(qty), D(0), "USDT", Liquidity.TAKER, trade_id)


def _order(status: OrderStatus, executed: str, fills: tuple[VenueFill, ...]) -> VenueOrder:
    return VenueOrder("BTCUSDT", "c1", "77", status, Side.BUY, D(3), D(executed), 1, fills)


def test_fold_dedups_fills_and_emits_each_transition_once() -> None:
    tracked = TrackedOrder(intent(OrderType.LIMIT, price=D(100), client_order_id="c1"), False, 0)
    first = fold_order(tracked, _order(OrderStatus.PARTIALLY_FILLED, "1", (_fill(1, "1"),)))
    assert [type(e) for e in first] == [OrderAccepted, OrderFilled]
    again = fold_order(tracked, _order(OrderStatus.PARTIALLY_FILLED, "1", (_fill(1, "1"),)))
    assert again == []
    assert tracked.status is OrderStatus.PARTIALLY_FILLED
    last = fold_order(tracked, _order(OrderStatus.FILLED, "3", (_fill(1, "1"), _fill(2, "2"))))
    assert [(e.trade_id, e.order_complete) for e in last if isinstance(e, OrderFilled)] == [
        (2, True)
    ]
    assert tracked.status is OrderStatus.FILLED and tracked.filled_qty == D(3)
    assert fold_order(tracked, _order(OrderStatus.FILLED, "3", (_fill(2, "2"),))) == []


def test_fold_cancel_once() -> None:
    tracked = TrackedOrder(intent(OrderType.LIMIT, price=D(100), client_order_id="c1"), False, 0)
    fold_order(tracked, _order(OrderStatus.NEW, "0", ()))
    assert [type(e) for e in fold_order(tracked, _order(OrderStatus.CANCELED, "0", ()))] == [
        OrderCanceled
    ]
    assert fold_order(tracked, _order(OrderStatus.CANCELED, "0", ())) == []


def test_parse_user_stream_events() -> None:
    # executionReport of a cancel: `c` is the cancel's id, `C` ours (API reference §6.1)
    report = {
        "e": "executionReport", "E": 10, "s": "ETHBTC", "c": "cancel-1", "C": "ours-1",
        "S": "BUY", "q": "1.00000000", "X": "CANCELED", "x": "CANCELED", "i": 4293153,
        "z": "0.00000000", "t": -1, "T": 9,
    }  # fmt: skip
    from exchange.binance.orders import parse_execution_report, parse_order_trade_update

    order = parse_execution_report(report)
    assert (order.client_order_id, order.status, order.fills) == ("ours-1", "CANCELED", ())
    update = {
        "e": "ORDER_TRADE_UPDATE", "E": 20, "T": 19,
        "o": {"s": "BTCUSDT", "c": "ours-2", "S": "SELL", "q": "0.002", "x": "TRADE",
              "X": "PARTIALLY_FILLED", "i": 8886774, "l": "0.001", "z": "0.001",
              "L": "64089.2", "N": "USDT", "n": "0.03", "T": 19, "t": 109100866, "m": True},
    }  # fmt: skip
    order = parse_order_trade_update(update)
    assert (order.status, order.executed_qty, order.venue_order_id) == (
        "PARTIALLY_FILLED",
        D("0.001"),
        "8886774",
    )
    assert order.fills == (
        VenueFill(109100866, D("64089.2"), D("0.001"), D("0.03"), "USDT", Liquidity.MAKER, 19),
    )


def test_fold_flags_the_fill_that_completes_the_quantity_even_in_a_partial_report() -> None:
    tracked = TrackedOrder(intent(OrderType.LIMIT, price=D(100), client_order_id="c1"), False, 0)
    # the trades were fetched after the order finished, the status read just before
    events = fold_order(
        tracked, _order(OrderStatus.PARTIALLY_FILLED, "1", (_fill(1, "1"), _fill(2, "2")))
    )
    assert [(e.trade_id, e.order_complete) for e in events if isinstance(e, OrderFilled)] == [
        (1, False),
        (2, True),
    ]
