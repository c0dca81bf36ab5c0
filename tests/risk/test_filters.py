"""Filter parsing and hand-worked quantisation cases for every filter type, old and new spelling."""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path

import pytest
from risk_cases import NEW_SPOT, NEW_USDM, spot, usdm

from engine.model import Market, Side
from engine.orders import OrderIntent, OrderRejected, OrderType
from risk.filters import (
    ExchangeFilters,
    FilterReject,
    account_filter_failure,
    load_exchange_filters,
    parse_exchange_filters,
)
from risk.quantize import (
    OrderDraft,
    QuantizedOrder,
    format_decimal,
    quantize_order,
    snap_down,
    snap_up,
)
from risk.rejects import RejectMemory, filter_reject_of

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "binance-rest"


def q(
    filters: ExchangeFilters,
    side: Side,
    order_type: OrderType,
    qty: str,
    price: str | None = None,
    stop: str | None = None,
    ref: str = "600",
    reduce_only: bool = False,
    callback: str | None = None,
) -> QuantizedOrder | FilterReject:
    draft = OrderDraft(
        filters.symbol,
        side,
        order_type,
        D(qty),
        price=None if price is None else D(price),
        stop_price=None if stop is None else D(stop),
        reduce_only=reduce_only,
        callback_rate_pct=None if callback is None else D(callback),
    )
    return quantize_order(draft, filters, D(ref))


def rejected(result: object, name: str) -> bool:
    return isinstance(result, FilterReject) and result.filter == name


# -- parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "market,name",
    [
        (Market.SPOT, "spot_exchangeInfo_20211012.json"),
        (Market.USDM, "usdm_exchangeInfo_20210721.json"),
    ],
)
def test_every_filter_in_the_shared_files_is_understood(market: Market, name: str) -> None:
    path = DATA / name
    if not path.is_file():
        pytest.skip(f"{path} absent")
    info = json.loads(path.read_text())
    parsed = load_exchange_filters(info, market)
    assert len(parsed) == len(info["symbols"])
    for entry in info["symbols"]:
        f = parsed[entry["symbol"]]
        raw = {x["filterType"]: x for x in entry["filters"]}
        assert f.unknown_filters == ()
        assert f.price.tick_size == D(raw["PRICE_FILTER"]["tickSize"])
        assert f.lot.step_size == D(raw["LOT_SIZE"]["stepSize"])
        assert (f.market_lot is not None) == ("MARKET_LOT_SIZE" in raw)
        assert len(f.notionals) == ("MIN_NOTIONAL" in raw)
        assert len(f.percent_prices) == ("PERCENT_PRICE" in raw)
        assert (f.max_num_orders is not None) == ("MAX_NUM_ORDERS" in raw)
        assert (f.max_num_algo_orders is not None) == ("MAX_NUM_ALGO_ORDERS" in raw)
        assert (f.max_position is not None) == ("MAX_POSITION" in raw)
        assert (f.iceberg_parts is not None) == ("ICEBERG_PARTS" in raw)


def test_new_spot_filters_parse_with_their_semantics() -> None:
    f = spot()
    assert f.unknown_filters == ("SOMETHING_NEW",)
    (notional,) = f.notionals
    assert (notional.filter_name, notional.min_notional, notional.max_notional) == (
        "NOTIONAL",
        D(5),
        D(9000000),
    )
    assert not notional.apply_min_to_market and not notional.apply_max_to_market
    (band,) = f.percent_prices
    assert band.filter_name == "PERCENT_PRICE_BY_SIDE"
    assert f.trailing_delta is not None and f.trailing_delta.min_below == 10
    assert (f.max_num_orders, f.max_num_algo_orders, f.max_num_iceberg_orders) == (200, 5, 5)
    assert (f.max_position, f.max_num_order_amends, f.max_num_order_lists, f.iceberg_parts) == (
        D(10),
        10,
        20,
        10,
    )


def test_futures_spelling_min_notional_key_and_one_sided_band() -> None:
    f = usdm()
    (notional,) = f.notionals
    assert notional.min_notional == D(100) and notional.waived_for_reduce_only
    (band,) = f.percent_prices
    assert (
        band.bid_up == D("1.05")
        and band.bid_down is None
        and band.ask_up is None
        and band.ask_down == D("0.95")
    )
    assert (f.max_num_orders, f.max_num_algo_orders) == (200, 10)


# -- hand-worked quantisation ------------------------------------------------------------------


def test_limit_prices_round_to_the_passive_side_and_quantity_down() -> None:
    buy = q(spot(), Side.BUY, OrderType.LIMIT, "1.23456", price="600.019")
    sell = q(spot(), Side.SELL, OrderType.LIMIT, "1.23456", price="600.011")
    assert isinstance(buy, QuantizedOrder) and isinstance(sell, QuantizedOrder)
    assert (buy.order.price, buy.order.quantity) == (D("600.01"), D("1.234"))
    assert (sell.order.price, sell.order.quantity) == (D("600.02"), D("1.234"))
    assert buy.notional == D("600.01") * D("1.234")


def test_stops_round_toward_the_market_so_the_sized_loss_is_never_exceeded() -> None:
    long_stop = q(spot(), Side.SELL, OrderType.STOP_MARKET, "1", stop="580.005")  # protects a long
    short_stop = q(spot(), Side.BUY, OrderType.STOP_MARKET, "1", stop="620.005")  # protects a short
    assert isinstance(long_stop, QuantizedOrder) and long_stop.order.stop_price == D("580.01")
    assert isinstance(short_stop, QuantizedOrder) and short_stop.order.stop_price == D("620.00")


def test_futures_grid_counts_from_min_price() -> None:
    # minPrice 261.10, tick 0.10: 300.05 -> 300.00 (buy) / 300.10 (sell); exactly on grid stays.
    buy = q(usdm(), Side.BUY, OrderType.LIMIT, "1", price="300.05", ref="300")
    sell = q(usdm(), Side.SELL, OrderType.LIMIT, "1", price="300.05", ref="300")
    assert isinstance(buy, QuantizedOrder) and buy.order.price == D("300.0")
    assert isinstance(sell, QuantizedOrder) and sell.order.price == D("300.1")
    odd = parse_exchange_filters(
        {
            **NEW_USDM,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": "0.05",
                    "maxPrice": "1000",
                    "tickSize": "0.1",
                },
                {"filterType": "LOT_SIZE", "minQty": "1", "maxQty": "1000", "stepSize": "1"},
            ],
        },
        Market.USDM,
    )
    r = q(odd, Side.BUY, OrderType.LIMIT, "3", price="10.12", ref="10")
    assert isinstance(r, QuantizedOrder) and r.order.price == D("10.05")  # 0.05 + 100 x 0.1


def test_price_filter_bounds_reject() -> None:
    assert rejected(
        q(spot(), Side.BUY, OrderType.LIMIT, "1", price="0.001", ref="0.002"), "PRICE_FILTER"
    )
    assert rejected(
        q(spot(), Side.SELL, OrderType.LIMIT, "0.001", price="100000.01", ref="100000"),
        "PRICE_FILTER",
    )


def test_lot_size_min_max_and_market_lot_size_for_market_orders() -> None:
    assert rejected(q(spot(), Side.BUY, OrderType.LIMIT, "0.0009", price="600"), "LOT_SIZE")
    assert rejected(q(spot(), Side.BUY, OrderType.LIMIT, "9000.001", price="600"), "LOT_SIZE")
    # 1500 fits LOT_SIZE (max 9000) but not MARKET_LOT_SIZE (max 1000): only MARKET is refused.
    assert isinstance(q(spot(), Side.BUY, OrderType.LIMIT, "1500", price="600"), QuantizedOrder)
    assert rejected(q(spot(), Side.BUY, OrderType.MARKET, "1500"), "MARKET_LOT_SIZE")
    assert rejected(q(usdm(), Side.BUY, OrderType.MARKET, "121", ref="30000"), "MARKET_LOT_SIZE")


def test_spot_notional_apply_to_market_flags() -> None:
    # minNotional 5 with applyMinToMarket false: a 3-USDT MARKET passes, a 3-USDT LIMIT does not.
    assert isinstance(q(spot(), Side.BUY, OrderType.MARKET, "0.005", ref="600"), QuantizedOrder)
    assert rejected(q(spot(), Side.BUY, OrderType.LIMIT, "0.005", price="600"), "NOTIONAL")
    big = q(spot(), Side.BUY, OrderType.LIMIT, "8000", price="1200", ref="1000")  # 9.6M > 9M
    assert rejected(big, "NOTIONAL")
    assert isinstance(
        q(spot(), Side.BUY, OrderType.MARKET, "999", ref="10000"), QuantizedOrder
    )  # 9.99M
    applied = parse_exchange_filters(
        {
            **NEW_SPOT,
            "filters": [
                f
                if f["filterType"] != "NOTIONAL"
                else {**f, "applyMinToMarket": True, "applyMaxToMarket": True}
                for f in NEW_SPOT["filters"]
            ],
        },
        Market.SPOT,
    )
    assert rejected(q(applied, Side.BUY, OrderType.MARKET, "0.005", ref="600"), "NOTIONAL")
    assert rejected(q(applied, Side.BUY, OrderType.MARKET, "999", ref="10000"), "NOTIONAL")


def test_old_spot_min_notional_apply_to_market() -> None:
    entry = {
        "symbol": "X",
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "0", "tickSize": "0.01"},
            {"filterType": "LOT_SIZE", "minQty": "0.1", "maxQty": "1000", "stepSize": "0.1"},
            {
                "filterType": "MIN_NOTIONAL",
                "minNotional": "10",
                "applyToMarket": False,
                "avgPriceMins": 5,
            },
        ],
    }
    f = parse_exchange_filters(entry, Market.SPOT)
    assert isinstance(q(f, Side.BUY, OrderType.MARKET, "0.5", ref="10"), QuantizedOrder)
    assert rejected(q(f, Side.BUY, OrderType.LIMIT, "0.5", price="10", ref="10"), "MIN_NOTIONAL")
    assert isinstance(
        q(f, Side.BUY, OrderType.LIMIT, "0.5", price="5000", ref="4000"), QuantizedOrder
    )  # maxPrice 0


def test_futures_min_notional_is_waived_for_reduce_only() -> None:
    # 0.002 BTC at 30000 = 60 USDT < 100.
    assert rejected(q(usdm(), Side.SELL, OrderType.MARKET, "0.002", ref="30000"), "MIN_NOTIONAL")
    assert isinstance(
        q(usdm(), Side.SELL, OrderType.MARKET, "0.002", ref="30000", reduce_only=True),
        QuantizedOrder,
    )
    # Spot has no reduce-only: the flag changes nothing there.
    assert rejected(
        q(spot(), Side.SELL, OrderType.LIMIT, "0.005", price="600", reduce_only=True), "NOTIONAL"
    )


def test_futures_percent_price_is_one_sided_against_mark() -> None:
    # mark 30000, up 1.05, down 0.95
    assert rejected(
        q(usdm(), Side.BUY, OrderType.LIMIT, "0.01", price="31500.1", ref="30000"), "PERCENT_PRICE"
    )
    assert isinstance(
        q(usdm(), Side.BUY, OrderType.LIMIT, "0.01", price="31500", ref="30000"), QuantizedOrder
    )
    assert isinstance(
        q(usdm(), Side.BUY, OrderType.LIMIT, "0.01", price="20000", ref="30000"), QuantizedOrder
    )
    assert rejected(
        q(usdm(), Side.SELL, OrderType.LIMIT, "0.01", price="28499.9", ref="30000"), "PERCENT_PRICE"
    )
    assert isinstance(
        q(usdm(), Side.SELL, OrderType.LIMIT, "0.01", price="40000", ref="30000"), QuantizedOrder
    )


def test_spot_percent_price_by_side() -> None:
    entry = {
        **NEW_SPOT,
        "filters": [
            f
            if f["filterType"] != "PERCENT_PRICE_BY_SIDE"
            else {
                **f,
                "bidMultiplierUp": "1.1",
                "bidMultiplierDown": "0.5",
                "askMultiplierUp": "2",
                "askMultiplierDown": "0.9",
            }
            for f in NEW_SPOT["filters"]
        ],
    }
    f = parse_exchange_filters(entry, Market.SPOT)
    assert rejected(
        q(f, Side.BUY, OrderType.LIMIT, "1", price="110.01", ref="100"), "PERCENT_PRICE_BY_SIDE"
    )
    assert rejected(
        q(f, Side.BUY, OrderType.LIMIT, "1", price="49.99", ref="100"), "PERCENT_PRICE_BY_SIDE"
    )
    assert isinstance(
        q(f, Side.SELL, OrderType.LIMIT, "1", price="199.99", ref="100"), QuantizedOrder
    )
    assert rejected(
        q(f, Side.SELL, OrderType.LIMIT, "1", price="89.99", ref="100"), "PERCENT_PRICE_BY_SIDE"
    )


def test_trailing_delta_and_futures_callback_rate() -> None:
    ok = q(spot(), Side.SELL, OrderType.TRAILING_STOP_MARKET, "1", stop="650", callback="1.005")
    assert isinstance(ok, QuantizedOrder) and ok.order.callback_rate_pct == D("1.00")  # 100 bips
    assert rejected(
        q(spot(), Side.SELL, OrderType.TRAILING_STOP_MARKET, "1", stop="650", callback="0.05"),
        "TRAILING_DELTA",
    )  # 5 bips < 10
    assert rejected(
        q(spot(), Side.BUY, OrderType.TRAILING_STOP_MARKET, "1", stop="650", callback="21"),
        "TRAILING_DELTA",
    )  # 2100 bips > 2000
    fut = q(
        usdm(),
        Side.SELL,
        OrderType.TRAILING_STOP_MARKET,
        "0.01",
        stop="31000",
        ref="30000",
        callback="1.25",
    )
    assert isinstance(fut, QuantizedOrder) and fut.order.callback_rate_pct == D("1.2")
    assert rejected(
        q(
            usdm(),
            Side.SELL,
            OrderType.TRAILING_STOP_MARKET,
            "0.01",
            stop="31000",
            ref="30000",
            callback="10.5",
        ),
        "CALLBACK_RATE",
    )


def test_account_filters_order_counts_and_max_position() -> None:
    f = spot()
    kw = {"side": Side.BUY, "order_type": OrderType.LIMIT, "quantity": D(1)}
    assert account_filter_failure(f, **kw, open_orders=199, open_algo_orders=0) is None
    assert (
        account_filter_failure(f, **kw, open_orders=200, open_algo_orders=0).filter
        == "MAX_NUM_ORDERS"
    )
    stop = {"side": Side.SELL, "order_type": OrderType.STOP_MARKET, "quantity": D(1)}
    assert account_filter_failure(f, **stop, open_orders=5, open_algo_orders=4) is None
    assert (
        account_filter_failure(f, **stop, open_orders=5, open_algo_orders=5).filter
        == "MAX_NUM_ALGO_ORDERS"
    )
    assert (
        account_filter_failure(f, **kw, open_orders=0, open_algo_orders=0, base_position=D(9))
        is None
    )
    over = account_filter_failure(
        f, **kw, open_orders=0, open_algo_orders=0, base_position=D(9), open_buy_quantity=D("0.5")
    )
    assert over is not None and over.filter == "MAX_POSITION"
    sell = {"side": Side.SELL, "order_type": OrderType.LIMIT, "quantity": D(1)}
    assert (
        account_filter_failure(f, **sell, open_orders=0, open_algo_orders=0, base_position=D(50))
        is None
    )


def test_wire_strings_are_plain_decimals() -> None:
    assert format_decimal(D("1E+2")) == "100"
    assert format_decimal(D("0.00010000")) == "0.0001"
    assert format_decimal(D("1.2E-7")) == "0.00000012"
    assert format_decimal(D("0E-8")) == "0"
    assert snap_down(D(7), D("1E+1")) == D(0) and snap_up(D(7), D("1E+1")) == D(10)


def test_reject_memory_refuses_an_identical_resend_but_not_a_changed_order() -> None:
    memory = RejectMemory(capacity=2)
    intent = OrderIntent(
        "tl-BNBUSDT-1-en", "BNBUSDT", Side.BUY, OrderType.LIMIT, D("0.010"), price=D("600.00")
    )
    event = OrderRejected(
        "BNBUSDT", intent.client_order_id, "UNKNOWN", "Filter failure: NOTIONAL", 1
    )
    reject = filter_reject_of(event)
    assert reject is not None and reject.filter == "NOTIONAL"
    memory.remember(intent, reject)
    same_but_new_id = OrderIntent(
        "tl-BNBUSDT-2-en", "BNBUSDT", Side.BUY, OrderType.LIMIT, D("0.01"), price=D(600)
    )
    assert memory.known_reject(same_but_new_id) == reject
    bigger = OrderIntent(
        "tl-BNBUSDT-3-en", "BNBUSDT", Side.BUY, OrderType.LIMIT, D("0.02"), price=D(600)
    )
    assert memory.known_reject(bigger) is None
    memory.forget_symbol("BNBUSDT")
    assert memory.known_reject(same_but_new_id) is None


def test_only_filter_rejects_are_remembered() -> None:
    assert (
        filter_reject_of(OrderRejected("X", "c", "LOT_SIZE", "Quantity less than min", 1)).filter
        == "LOT_SIZE"
    )
    assert (
        filter_reject_of(
            OrderRejected("X", "c", "INSUFFICIENT_BALANCE", "Account has insufficient balance", 1)
        )
        is None
    )
