"""Order and user-stream bodies bent out of shape: parsers fail only in their documented ways.

Seeds are the bodies binance-api.md §3.5 and §6 document (spot FULL order answer, USDⓈ-M algo
answer, myTrades/userTrades rows, executionReport, ORDER_TRADE_UPDATE, ALGO_UPDATE,
ACCOUNT_UPDATE, outboundAccountPosition, listenKeyExpired, eventStreamTerminated). Mutations
delete fields or replace any nested value with any JSON value; wrappers change; random bytes too.

* `parse_user_frame` (exchange/binance/user_events.py) documents `MalformedUserEvent`: it is the
  only exception; every parsed amount is a finite Decimal; `UserEventFold` folds what it returns.
* `parse_order` / `parse_algo` / `parse_trades` / `parse_oco` (exchange/binance/orders.py)
  document `MalformedOrderBody`: it is the only exception, whatever the body (object or not),
  and every amount of what they return is a finite Decimal.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from decimal import Decimal
from typing import Any

import pytest
from fuzz_support import count, fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from engine.model import Market
from exchange.binance.orders import (
    MalformedOrderBody,
    VenueOrder,
    parse_algo,
    parse_oco,
    parse_order,
    parse_trades,
)
from exchange.binance.user_events import (
    AccountSnapshot,
    AlgoUpdate,
    MalformedUserEvent,
    OrderUpdate,
    UserEventFold,
    parse_user_frame,
)

SUITE = "order_bodies"

# -- seeds: the documented shapes -------------------------------------------------------------

SPOT_FULL = {
    "symbol": "BTCUSDT", "orderId": 28, "orderListId": -1, "clientOrderId": "6gCrw2kRUAF9CvJDGP16IP",
    "transactTime": 1507725176595, "price": "0.00000000", "origQty": "10.00000000",
    "executedQty": "10.00000000", "cummulativeQuoteQty": "10.00000000", "status": "FILLED",
    "timeInForce": "GTC", "type": "MARKET", "side": "SELL",
    "fills": [{"price": "4000.00000000", "qty": "1.00000000", "commission": "4.00000000",
               "commissionAsset": "USDT", "tradeId": 56}],
}  # fmt: skip
USDM_ORDER = {
    "clientOrderId": "tl-1-42", "cumQty": "0", "cumQuote": "0", "executedQty": "0.002",
    "orderId": 22542179, "avgPrice": "0.00000", "origQty": "0.010", "price": "61000",
    "reduceOnly": False, "side": "BUY", "positionSide": "BOTH", "status": "PARTIALLY_FILLED",
    "stopPrice": "0", "closePosition": False, "symbol": "BTCUSDT", "timeInForce": "GTC",
    "type": "LIMIT", "origType": "LIMIT", "updateTime": 1566818724722, "workingType": "CONTRACT_PRICE",
    "priceProtect": False, "priceMatch": "NONE", "selfTradePreventionMode": "NONE", "goodTillDate": 0,
}  # fmt: skip
ALGO = {
    "algoId": 2146760, "clientAlgoId": "tl-1-43", "algoType": "CONDITIONAL",
    "orderType": "TAKE_PROFIT", "symbol": "BNBUSDT", "side": "SELL", "positionSide": "BOTH",
    "timeInForce": "GTC", "quantity": "0.01", "algoStatus": "NEW", "triggerPrice": "750.000",
    "price": "750.000", "createTime": 1750485492076, "triggerTime": 0, "actualOrderId": "",
}  # fmt: skip
SPOT_TRADE = {
    "symbol": "BTCUSDT", "id": 28457, "orderId": 100234, "orderListId": -1, "price": "4.00000100",
    "qty": "12.00000000", "quoteQty": "48.000012", "commission": "10.10000000",
    "commissionAsset": "BNB", "time": 1499865549590, "isBuyer": True, "isMaker": False,
    "isBestMatch": True,
}  # fmt: skip
USDM_TRADE = {
    "buyer": False, "commission": "-0.07819010", "commissionAsset": "USDT", "id": 698759,
    "maker": False, "orderId": 25851813, "price": "7819.01", "qty": "0.002", "quoteQty": "15.63802",
    "realizedPnl": "-0.91539999", "side": "SELL", "positionSide": "SHORT", "symbol": "BTCUSDT",
    "time": 1569514978020,
}  # fmt: skip
OCO = {"orderListId": 1, "contingencyType": "OCO", "orderReports": [SPOT_FULL, SPOT_FULL]}
EXECUTION_REPORT = {
    "e": "executionReport", "E": 1499405658658, "s": "ETHBTC", "c": "mUvoqJxFIILMdfAW5iGSOW",
    "S": "BUY", "o": "LIMIT", "f": "GTC", "q": "1.00000000", "p": "0.10264410", "P": "0.00000000",
    "F": "0.00000000", "g": -1, "C": "", "x": "TRADE", "X": "PARTIALLY_FILLED", "r": "NONE",
    "i": 4293153, "l": "0.50000000", "z": "0.50000000", "L": "0.10264410", "n": "0.00010000",
    "N": "BNB", "T": 1499405658657, "t": 12, "v": 3, "I": 8641984, "w": True, "m": False,
    "M": False, "O": 1499405658657, "Z": "0.05132205", "Y": "0.05132205", "Q": "0.00000000",
    "W": 1499405658657, "V": "NONE",
}  # fmt: skip
ORDER_TRADE_UPDATE = {
    "e": "ORDER_TRADE_UPDATE", "E": 1568879465651, "T": 1568879465650,
    "o": {"s": "BTCUSDT", "c": "TEST", "S": "SELL", "o": "LIMIT", "f": "GTC", "q": "0.001",
          "p": "7000", "ap": "7000", "sp": "0", "x": "TRADE", "X": "FILLED", "i": 8886774,
          "l": "0.001", "z": "0.001", "L": "7000", "N": "USDT", "n": "0.0028", "T": 1568879465650,
          "t": 5, "b": "0", "a": "0", "m": False, "R": False, "wt": "CONTRACT_PRICE",
          "ot": "LIMIT", "ps": "BOTH", "cp": False, "rp": "0.50", "V": "EXPIRE_TAKER",
          "pm": "NONE", "gtd": 0, "er": "0"},
}  # fmt: skip
ALGO_UPDATE = {
    "e": "ALGO_UPDATE", "T": 1750515742297, "E": 1750515742303,
    "o": {"caid": "Q5xaq5EGKgXXa0fD7fs0Ip", "aid": 2148719, "at": "CONDITIONAL",
          "o": "TAKE_PROFIT", "s": "BNBUSDT", "S": "SELL", "ps": "BOTH", "f": "GTC", "q": "0.01",
          "X": "CANCELED", "ai": "", "ap": "0.00000", "aq": "0.00000", "act": "0", "tp": "750",
          "p": "750", "V": "EXPIRE_MAKER", "wt": "CONTRACT_PRICE", "pm": "NONE", "cp": False,
          "pP": False, "R": False, "tt": 0, "gtd": 0, "rm": "Reduce Only reject"},
}  # fmt: skip
ACCOUNT_UPDATE = {
    "e": "ACCOUNT_UPDATE", "E": 1564745798939, "T": 1564745798938,
    "a": {"m": "FUNDING_FEE",
          "B": [{"a": "USDT", "wb": "122624.12345678", "cw": "100.12345678", "bc": "-0.5"}],
          "P": [{"s": "BTCUSDT", "pa": "20", "ep": "6563.66500", "bep": "0", "cr": "0",
                 "up": "2850.21200", "mt": "isolated", "iw": "13200.70726908", "ps": "LONG"}]},
}  # fmt: skip
ACCOUNT_POSITION = {
    "e": "outboundAccountPosition", "E": 1564034571105, "u": 1564034571073,
    "B": [{"a": "ETH", "f": "10000.000000", "l": "0.000000"}],
}  # fmt: skip
LISTEN_KEY_EXPIRED = {"e": "listenKeyExpired", "E": 1736996475556, "listenKey": "WsCMN0a4"}
STREAM_TERMINATED = {"e": "eventStreamTerminated", "E": 1728973001334}
USER_EVENTS = [
    EXECUTION_REPORT, ORDER_TRADE_UPDATE, ALGO_UPDATE, ACCOUNT_UPDATE, ACCOUNT_POSITION,
    LISTEN_KEY_EXPIRED, STREAM_TERMINATED,
]  # fmt: skip

# -- mutation ---------------------------------------------------------------------------------

_AMOUNT_TEXT = st.sampled_from(
    ["NaN", "-NaN", "sNaN", "Infinity", "-Infinity", "inf", "1e999999999", "-1", "0", "",
     "abc", "１２", " 7 ", "1_000", "0x10", "1e-40"]
)  # fmt: skip
_JSON = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**30), 10**30),
        st.floats(allow_nan=False, allow_infinity=False),  # what a JSON body can carry
        st.text(max_size=10),
        _AMOUNT_TEXT,
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out: list[tuple] = []
    if isinstance(node, dict):
        items = list(node.items())
    elif isinstance(node, list):
        items = list(enumerate(node))
    else:
        return out
    for key, value in items:
        out.append((*prefix, key))
        out += _paths(value, (*prefix, key))
    return out


def _mutate(data: st.DataObject, seed: dict) -> Any:
    """Delete fields or replace any nested value; sometimes replace the whole body."""
    body: Any = copy.deepcopy(seed)
    if data.draw(st.integers(0, 9), label="replace body?") == 0:
        return data.draw(_JSON, label="body")
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        paths = _paths(body)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths), label="path")
        parent = body
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and data.draw(st.booleans(), label="delete?"):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(_JSON, label="value")
    return body


def _decimals(value: Any) -> list[Decimal]:
    if isinstance(value, Decimal):
        return [value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [d for f in dataclasses.fields(value) for d in _decimals(getattr(value, f.name))]
    if isinstance(value, (tuple, list)):
        return [d for item in value for d in _decimals(item)]
    return []


# -- user stream ------------------------------------------------------------------------------


def _wrap(kind: str, event: Any) -> Any:
    if kind == "ws-api":
        return {"subscriptionId": 0, "event": event}
    if kind == "combined":
        return {"stream": "listenKey", "data": event}
    return event


@fuzz_settings(ci_examples=300, deep_examples=10_000)
@given(
    seed=st.sampled_from(USER_EVENTS),
    wrapper=st.sampled_from(["bare", "ws-api", "combined"]),
    raw=st.one_of(st.none(), st.binary(max_size=100)),
    data=st.data(),
)
def test_user_frames_raise_only_malformed_user_event(
    seed: dict, wrapper: str, raw: bytes | None, data: st.DataObject
) -> None:
    count(SUITE)
    frame = raw if raw is not None else json.dumps(_wrap(wrapper, _mutate(data, seed))).encode()
    try:
        event = parse_user_frame(frame)
    except MalformedUserEvent:
        return
    for amount in _decimals(event):
        assert amount.is_finite(), (event, frame)
    if isinstance(event, (OrderUpdate, AlgoUpdate, AccountSnapshot)):
        UserEventFold().apply(event)  # what the venue does next: must not raise either


@pytest.mark.parametrize("seed", USER_EVENTS, ids=lambda s: s["e"])
def test_documented_user_events_parse(seed: dict) -> None:
    """The seeds themselves parse (the mutations start from valid frames)."""
    count(SUITE)
    assert parse_user_frame(json.dumps(seed)) is not None


# -- REST order bodies ------------------------------------------------------------------------

_PARSE_ERRORS = (MalformedOrderBody,)
_ORDER_SEEDS = [
    ("spot order", SPOT_FULL),
    ("usdm order", USDM_ORDER),
    ("algo", ALGO),
    ("oco", OCO),
    ("spot trades", {"rows": [SPOT_TRADE, SPOT_TRADE]}),
    ("usdm trades", {"rows": [USDM_TRADE]}),
]


def _parse_rest(kind: str, body: Any) -> tuple[VenueOrder, ...]:
    if kind == "spot order":
        return (parse_order(Market.SPOT, body),)
    if kind == "usdm order":
        return (parse_order(Market.USDM, body),)
    if kind == "algo":
        return (parse_algo(body),)
    if kind == "oco":
        return tuple(parse_oco(body))
    rows = body.get("rows") if isinstance(body, dict) else body
    market = Market.SPOT if kind == "spot trades" else Market.USDM
    return tuple(parse_trades(market, rows))  # type: ignore[arg-type]


@fuzz_settings(ci_examples=300, deep_examples=10_000)
@given(seed=st.sampled_from(_ORDER_SEEDS), data=st.data())
def test_order_bodies_raise_only_malformed_order_body(
    seed: tuple[str, dict], data: st.DataObject
) -> None:
    count(SUITE)
    kind, body = seed
    mutated = _mutate(data, body)
    try:
        orders = _parse_rest(kind, mutated)
    except _PARSE_ERRORS:
        return
    for amount in _decimals(orders):
        assert amount.is_finite(), (orders, mutated)


@pytest.mark.parametrize("seed", _ORDER_SEEDS, ids=[k for k, _ in _ORDER_SEEDS])
def test_documented_order_bodies_parse(seed: tuple[str, dict]) -> None:
    count(SUITE)
    kind, body = seed
    assert _parse_rest(kind, body)


@pytest.mark.parametrize("body", [[], "ok", 7, None], ids=["list", "string", "number", "null"])
def test_an_order_body_that_is_not_an_object_raises_a_parse_error(body: Any) -> None:
    count(SUITE)
    for kind, bad in (
        ("spot order", body),
        ("usdm order", body),
        ("algo", body),
        ("oco", body),
        ("oco", {**OCO, "orderReports": [SPOT_FULL, body]}),
    ):
        with pytest.raises(_PARSE_ERRORS):
            _parse_rest(kind, bad)


@pytest.mark.parametrize("amount", ["NaN", "Infinity", "sNaN"])
def test_order_amounts_that_are_not_finite_are_refused(amount: str) -> None:
    count(SUITE)
    for kind, body, key in (
        ("spot order", SPOT_FULL, "executedQty"),
        ("usdm order", USDM_ORDER, "origQty"),
        ("algo", ALGO, "quantity"),
    ):
        bad = {**body, key: amount}
        with pytest.raises(_PARSE_ERRORS):
            orders = _parse_rest(kind, bad)
            assert all(d.is_finite() for d in _decimals(orders)), orders
