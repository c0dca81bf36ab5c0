"""Parsing and folding of Binance user-data events, on payloads written from binance-api.md §6."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from engine.model import Side
from engine.orders import (
    FundingPaid,
    Liquidity,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
)
from exchange.binance.user_events import (
    AccountSnapshot,
    AlgoUpdate,
    BalanceSnapshot,
    ListenKeyExpired,
    MalformedUserEvent,
    PositionSnapshot,
    StreamTerminated,
    UserEventFold,
    parse_user_frame,
)

SPOT_NEW = {
    "e": "executionReport", "E": 1499405658658, "s": "ETHBTC", "c": "mUvoqJxFIILMdfAW5iGSOW",
    "S": "BUY", "o": "LIMIT", "f": "GTC", "q": "1.00000000", "p": "0.10264410", "P": "0.00000000",
    "F": "0.00000000", "g": -1, "C": "", "x": "NEW", "X": "NEW", "r": "NONE", "i": 4293153,
    "l": "0.00000000", "z": "0.00000000", "L": "0.00000000", "n": "0", "N": None,
    "T": 1499405658657, "t": -1, "v": 3, "I": 8641984, "w": True, "m": False, "M": False,
    "O": 1499405658657, "Z": "0.00000000", "Y": "0.00000000", "Q": "0.00000000",
    "W": 1499405658657, "V": "NONE",
}  # fmt: skip


def spot(**changes: object) -> bytes:
    return orjson.dumps({"subscriptionId": 0, "event": {**SPOT_NEW, **changes}})


def futures_order(**changes: object) -> bytes:
    order = {
        "s": "BTCUSDT", "c": "TEST", "S": "SELL", "o": "LIMIT", "f": "GTC", "q": "0.003",
        "p": "7103.04", "ap": "0", "sp": "0", "x": "NEW", "X": "NEW", "i": 8886774, "l": "0",
        "z": "0", "L": "0", "T": 1568879465650, "t": 0, "b": "0", "a": "9.91", "m": False,
        "R": False, "wt": "CONTRACT_PRICE", "ot": "LIMIT", "ps": "BOTH", "cp": False, "rp": "0",
        "pP": False, "si": 0, "ss": 0, "V": "EXPIRE_TAKER", "pm": "NONE", "gtd": 0, "er": "0",
        **changes,
    }  # fmt: skip
    return orjson.dumps({"e": "ORDER_TRADE_UPDATE", "E": 1568879465651, "T": 1568879465650,
                         "o": order})  # fmt: skip


def fold_all(frames: list[bytes]) -> list[object]:
    fold = UserEventFold()
    out: list[object] = []
    for frame in frames:
        event = parse_user_frame(frame)
        assert event is not None
        out.extend(fold.apply(event))
    return out


def test_spot_order_lifecycle_folds_to_exact_events() -> None:
    trade = {"x": "TRADE", "X": "PARTIALLY_FILLED", "l": "0.40000000", "z": "0.40000000",
             "L": "0.10264000", "n": "0.00040000", "N": "ETH", "t": 77, "m": True,
             "T": 1499405658700}  # fmt: skip
    last = {"x": "TRADE", "X": "FILLED", "l": "0.60000000", "z": "1.00000000",
            "L": "0.10264410", "n": "0.00060000", "N": "BNB", "t": 78, "m": False,
            "T": 1499405658800}  # fmt: skip
    out = fold_all([spot(), spot(**trade), spot(**trade), spot(**last)])
    cid = "mUvoqJxFIILMdfAW5iGSOW"
    assert out == [
        OrderAccepted("ETHBTC", cid, "4293153", 1499405658657),
        OrderFilled("ETHBTC", cid, 77, Side.BUY, Decimal("0.10264000"), Decimal("0.4"),
                    Decimal("0.0004"), "ETH", Liquidity.MAKER, 1499405658700, False),
        OrderFilled("ETHBTC", cid, 78, Side.BUY, Decimal("0.10264410"), Decimal("0.6"),
                    Decimal("0.0006"), "BNB", Liquidity.TAKER, 1499405658800, True),
    ]  # fmt: skip


def test_spot_cancel_names_the_original_order_and_reject_and_expiry_carry_reasons() -> None:
    out = fold_all([
        spot(x="CANCELED", X="CANCELED", c="cancel-req-1", C="mUvoqJxFIILMdfAW5iGSOW"),
        spot(x="REJECTED", X="REJECTED", r="INSUFFICIENT_BALANCES", c="b"),
        spot(x="EXPIRED", X="EXPIRED", c="c", eR="UNFILLED_IOC_QUANTITY_EXPIRED"),
        spot(x="TRADE_PREVENTION", X="EXPIRED_IN_MATCH", c="d"),
    ])  # fmt: skip
    ts = 1499405658657
    assert out == [
        OrderCanceled("ETHBTC", "mUvoqJxFIILMdfAW5iGSOW", ts),
        OrderRejected("ETHBTC", "b", "INSUFFICIENT_BALANCES", "rejected by the venue", ts),
        OrderExpired("ETHBTC", "c", ts, "UNFILLED_IOC_QUANTITY_EXPIRED"),
        OrderExpired("ETHBTC", "d", ts, "TRADE_PREVENTION"),
    ]


def test_futures_fills_dedup_by_trade_id_and_expiry_reason() -> None:
    fill = {"x": "TRADE", "X": "FILLED", "l": "0.003", "z": "0.003", "L": "7103.10",
            "N": "USDT", "n": "0.01065465", "t": 1234, "m": True, "rp": "-0.5"}  # fmt: skip
    out = fold_all([futures_order(), futures_order(**fill), futures_order(**fill),
                    futures_order(x="EXPIRED", X="EXPIRED", c="ioc", er="2")])  # fmt: skip
    assert out == [
        OrderAccepted("BTCUSDT", "TEST", "8886774", 1568879465650),
        OrderFilled("BTCUSDT", "TEST", 1234, Side.SELL, Decimal("7103.10"), Decimal("0.003"),
                    Decimal("0.01065465"), "USDT", Liquidity.MAKER, 1568879465650, True),
        OrderExpired("BTCUSDT", "ioc", 1568879465650, "2"),
    ]  # fmt: skip
    event = parse_user_frame(futures_order(**fill))
    assert event is not None and event.realized_pnl == Decimal("-0.5")  # type: ignore[union-attr]


def test_algo_update_states() -> None:
    def algo(status: str, rm: str = "") -> bytes:
        return orjson.dumps({"e": "ALGO_UPDATE", "T": 10, "E": 11, "o": {
            "caid": "sl-1", "aid": 2148719, "at": "CONDITIONAL", "o": "STOP_MARKET",
            "s": "BNBUSDT", "S": "SELL", "ps": "BOTH", "f": "GTC", "q": "0.01", "X": status,
            "ai": "", "ap": "0", "aq": "0", "act": "0", "tp": "750", "p": "750", "rm": rm}})  # fmt: skip

    parsed = parse_user_frame(algo("NEW"))
    assert parsed == AlgoUpdate("BNBUSDT", "sl-1", 2148719, Side.SELL, "STOP_MARKET", "NEW",
                                Decimal("0.01"), Decimal(750), "", "", 10)  # fmt: skip
    out = fold_all([algo("NEW"), algo("TRIGGERED"), algo("CANCELED"),
                    algo("REJECTED", "Reduce Only reject"), algo("EXPIRED")])  # fmt: skip
    assert out == [
        OrderAccepted("BNBUSDT", "sl-1", "algo:2148719", 10),
        OrderCanceled("BNBUSDT", "sl-1", 10),
        OrderRejected("BNBUSDT", "sl-1", "ALGO_REJECTED", "Reduce Only reject", 10),
        OrderExpired("BNBUSDT", "sl-1", 10),
    ]


def test_account_updates_give_snapshots_and_funding() -> None:
    order_update = orjson.dumps({"e": "ACCOUNT_UPDATE", "E": 5, "T": 4, "a": {"m": "ORDER",
        "B": [{"a": "USDT", "wb": "122624.12", "cw": "100.12", "bc": "50.12"}],
        "P": [{"s": "BTCUSDT", "pa": "-20", "ep": "6563.66500", "bep": "0", "cr": "0",
               "up": "2850.21200", "mt": "isolated", "iw": "13200.70", "ps": "BOTH"}]}})  # fmt: skip
    funding = orjson.dumps({"e": "ACCOUNT_UPDATE", "E": 9, "T": 8, "a": {"m": "FUNDING_FEE",
        "B": [{"a": "USDT", "wb": "122623.87", "cw": "99.87", "bc": "-0.25"}]}})  # fmt: skip
    spot_balance = orjson.dumps({"subscriptionId": 3, "event": {"e": "outboundAccountPosition",
        "E": 7, "u": 7, "B": [{"a": "ETH", "f": "10000.000000", "l": "1.5"}]}})  # fmt: skip
    out = fold_all([order_update, funding, spot_balance])
    assert out == [
        BalanceSnapshot("USDT", Decimal("122624.12"), Decimal(0), Decimal("100.12"),
                        Decimal("50.12"), 4),
        PositionSnapshot("BTCUSDT", "BOTH", Decimal(-20), Decimal("6563.665"),
                         Decimal("2850.212"), "isolated", 4),
        BalanceSnapshot("USDT", Decimal("122623.87"), Decimal(0), Decimal("99.87"),
                        Decimal("-0.25"), 8),
        FundingPaid("", Decimal("-0.25"), Decimal(0), "USDT", 8),
        BalanceSnapshot("ETH", Decimal(10000), Decimal("1.5"), Decimal(0), Decimal(0), 7),
    ]  # fmt: skip
    assert isinstance(parse_user_frame(funding), AccountSnapshot)


def test_markers_wrappers_and_unused_events() -> None:
    expired = {"e": "listenKeyExpired", "E": 1736996475556, "listenKey": "WsCMN0"}
    assert parse_user_frame(orjson.dumps(expired)) == ListenKeyExpired(1736996475556)
    combined = orjson.dumps({"stream": "WsCMN0", "data": expired})
    assert parse_user_frame(combined) == ListenKeyExpired(1736996475556)
    terminated = {"subscriptionId": 0, "event": {"e": "eventStreamTerminated", "E": 3}}
    assert parse_user_frame(orjson.dumps(terminated)) == StreamTerminated(3)
    assert parse_user_frame(b'{"e":"MARGIN_CALL","E":1,"cw":"3","p":[]}') is None
    assert parse_user_frame(b'{"id":"x","status":200,"result":{"subscriptionId":0}}') is None


@pytest.mark.parametrize(
    "frame",
    [
        b"not json",
        b"[1,2]",
        spot(q=None),
        spot(q=1.5),  # a float amount would lose exactness: refused
        spot(S="SIDEWAYS"),
        spot(p="NaN"),
        futures_order(i="x"),
        b'{"e":"ACCOUNT_UPDATE","E":1,"a":{"B":[]}}',
        b'{"subscriptionId":0,"event":[1]}',
    ],
)
def test_malformed_frames_raise_the_typed_error(frame: bytes) -> None:
    with pytest.raises(MalformedUserEvent):
        parse_user_frame(frame)
