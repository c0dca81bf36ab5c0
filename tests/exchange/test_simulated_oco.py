"""Simulated venue, spot OCO order lists: the quantity locked once, one leg ends the other,
Binance's price relationships; balances and fills worked out by hand.

Instrument: tick 0.1, step 0.001, min notional 5; fees 10 bps maker and taker.
"""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from engine.events import TradePrinted
from engine.model import Instrument, Market, Side
from engine.orders import (
    Liquidity,
    OrderAccepted,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    OrderType,
    SubmitOrderList,
)
from exchange.book import OrderBook
from exchange.simulated import SimulatedVenue, SimulatedVenueConfig
from exchange.simulated_orders import FeeSchedule

BTC = Instrument(
    "BTCUSDT",
    Market.SPOT,
    D("0.1"),
    D("0.001"),
    min_qty=D("0.001"),
    max_qty=D(100),
    min_notional=D(5),
    base_asset="BTC",
    quote_asset="USDT",
)
FEES = FeeSchedule(D(10), D(10))


def venue(usdt: str = "0", btc: str = "1", latency_ms: int = 0) -> SimulatedVenue:
    cfg = SimulatedVenueConfig(market=Market.SPOT, latency_ms=latency_ms, fees=FEES)
    return SimulatedVenue([BTC], {"USDT": D(usdt), "BTC": D(btc)}, cfg)


def book(bids: list, asks: list) -> OrderBook:
    b = OrderBook("BTCUSDT", "0.1")
    b.load_snapshot(bids, asks)
    return b


def trade(price: float, ts: int, seller_aggressor: bool = True, qty: float = 1.0) -> TradePrinted:
    return TradePrinted("BTCUSDT", ts, ts, 0, ts, price, qty, seller_aggressor)


def leg(cid: str, type: OrderType, stop: str | None, price: str | None = None,
        side: str = "SELL", qty: str = "1") -> OrderIntent:  # fmt: skip
    return OrderIntent(
        cid,
        "BTCUSDT",
        Side(side),
        type,
        D(qty),
        price=None if price is None else D(price),
        stop_price=None if stop is None else D(stop),
        reduce_only=True,
    )


SL = leg("sl", OrderType.STOP_MARKET, "95")
TP = leg("tp", OrderType.TAKE_PROFIT_MARKET, "105")


def kinds(events: list) -> list[tuple[str, str, str]]:
    out = []
    for e in events:
        detail = getattr(e, "reason", "") or ""
        out.append((type(e).__name__, e.client_order_id, detail))
    return out


def at_100(v: SimulatedVenue) -> SimulatedVenue:
    """Give the venue a book around 100 and a last trade at 100."""
    v.on_book("BTCUSDT", book([(99.9, 5.0), (94.0, 5.0)], [(100.1, 5.0)]), 1000)
    v.on_trade(trade(100.0, 1000))
    return v


def test_the_list_locks_its_quantity_once_where_two_orders_could_not() -> None:
    separate = at_100(venue())
    first = separate.submit(SL, 1000)
    second = separate.submit(TP, 1000)
    assert isinstance(first[0], OrderAccepted) and isinstance(second[0], OrderRejected)
    assert second[0].reason == "INSUFFICIENT_BALANCE"  # the bug OCO lists fix

    v = at_100(venue())
    events = v.submit_list("oc1", (SL, TP), 1000)
    assert kinds(events) == [("OrderAccepted", "sl", ""), ("OrderAccepted", "tp", "")]
    assert [e.venue_order_id for e in events] == ["1", "2"]
    assert v.balances()["BTC"].free == 0 and v.balances()["BTC"].locked == 1
    assert [o.client_order_id for o in v.open_orders()] == ["sl", "tp"]
    assert v.order_list_of("BTCUSDT", "tp") == ("oc1", "sl")
    # Nothing is left for another order: the one lock covers both legs.
    more = v.submit(leg("x", OrderType.STOP_MARKET, "90", qty="0.1"), 1000)
    assert more[0].reason == "INSUFFICIENT_BALANCE"


def test_the_stop_leg_fills_and_the_target_expires_after_it() -> None:
    v = at_100(venue())
    v.submit_list("oc1", (SL, TP), 1000)
    v.on_book("BTCUSDT", book([(94.5, 5.0)], [(95.5, 5.0)]), 2000)
    events = v.on_trade(trade(95.0, 2000))
    assert kinds(events) == [("OrderFilled", "sl", ""), ("OrderExpired", "tp", "OCO_OTHER_LEG")]
    filled = events[0]
    assert (filled.price, filled.quantity, filled.fee, filled.liquidity, filled.order_complete) == (
        D("94.5"), D(1), D("0.0945"), Liquidity.TAKER, True,
    )  # fmt: skip
    balances = v.balances()
    assert balances["BTC"].free == 0 and balances["BTC"].locked == 0
    assert balances["USDT"].free == D("94.5") - D("0.0945")
    assert v.open_orders() == [] and v.order_list_of("BTCUSDT", "tp") is None


def test_the_target_leg_takes_over_the_lock_when_it_triggers() -> None:
    v = at_100(venue())
    v.submit_list("oc1", (SL, TP), 1000)
    v.on_book("BTCUSDT", book([(104.9, 0.4), (104.8, 5.0)], [(105.1, 5.0)]), 2000)
    events = v.on_trade(trade(105.0, 2000, seller_aggressor=False))
    # 0.4 @ 104.9 (fee 0.04196) + 0.6 @ 104.8 (fee 0.06288), then the stop expires
    assert [(e.price, e.quantity, e.fee) for e in events if isinstance(e, OrderFilled)] == [
        (D("104.9"), D("0.4"), D("0.04196")),
        (D("104.8"), D("0.6"), D("0.06288")),
    ]
    assert kinds(events)[-1] == ("OrderExpired", "sl", "OCO_OTHER_LEG")
    assert v.balances()["BTC"].locked == 0 and v.balances()["BTC"].free == 0
    assert v.balances()["USDT"].free == D("41.96") + D("62.88") - D("0.04196") - D("0.06288")


def test_cancelling_either_leg_cancels_the_list() -> None:
    v = at_100(venue())
    v.submit_list("oc1", (SL, TP), 1000)
    events = v.cancel("BTCUSDT", "tp", 1500)
    assert kinds(events) == [
        ("OrderCanceled", "tp", "canceled"),
        ("OrderCanceled", "sl", "canceled"),
    ]
    assert v.balances()["BTC"].free == 1 and v.balances()["BTC"].locked == 0
    assert v.cancel("BTCUSDT", "sl", 1500) == [] and v.unknown_cancels == 1
    assert v.on_trade(trade(90.0, 2000)) == []  # nothing left to trigger


def test_a_triggered_stop_limit_leg_rests_holding_the_lock() -> None:
    v = at_100(venue())
    stop_limit = leg("sl", OrderType.STOP_LIMIT, "95", price="94.2")
    v.submit_list("oc1", (TP, stop_limit), 1000)  # the target holds the lock: it is first
    v.on_book("BTCUSDT", book([(94.0, 5.0)], [(95.5, 5.0)]), 2000)
    events = v.on_trade(trade(95.0, 2000))
    assert kinds(events) == [("OrderExpired", "tp", "OCO_OTHER_LEG")]  # sl now rests at 94.2
    assert [o.client_order_id for o in v.open_orders()] == ["sl"]
    assert v.balances()["BTC"].locked == 1  # the lock moved from tp to sl
    v.cancel("BTCUSDT", "sl", 2500)
    assert v.balances()["BTC"].free == 1 and v.balances()["BTC"].locked == 0


def test_a_limit_maker_leg_fills_as_maker_and_ends_the_stop() -> None:
    v = at_100(venue())
    v.submit_list("oc1", (SL, leg("tp", OrderType.LIMIT, None, price="105")), 1000)
    events = v.on_trade(trade(105.1, 2000, seller_aggressor=False, qty=3.0))
    assert kinds(events) == [("OrderFilled", "tp", ""), ("OrderExpired", "sl", "OCO_OTHER_LEG")]
    assert (events[0].price, events[0].liquidity, events[0].fee) == (
        D(105), Liquidity.MAKER, D("0.105"),
    )  # fmt: skip
    assert v.balances()["USDT"].free == D(105) - D("0.105") and v.balances()["BTC"].locked == 0


@pytest.mark.parametrize(
    ("legs", "why"),
    [
        ((SL, leg("tp", OrderType.TAKE_PROFIT_MARKET, "99")), "target below the last price"),
        ((leg("sl", OrderType.STOP_MARKET, "100"), TP), "stop at the last price"),
        ((leg("sl", OrderType.STOP_MARKET, "101"), leg("tp", OrderType.TAKE_PROFIT_MARKET, "102")),
         "stop above the last price"),
        ((leg("sl", OrderType.STOP_MARKET, "105", side="BUY"),
          leg("tp", OrderType.TAKE_PROFIT_MARKET, "101", side="BUY")), "BUY target above the last"),
    ],
)  # fmt: skip
def test_legs_on_the_wrong_side_of_the_last_price_reject_the_list(legs, why) -> None:
    v = at_100(venue(usdt="1000"))
    events = v.submit_list("oc1", legs, 1000)
    assert kinds(events) == [
        ("OrderRejected", legs[0].client_order_id, "OCO_PRICES"),
        ("OrderRejected", legs[1].client_order_id, "OCO_PRICES"),
    ], why
    assert events[0].message == "The relationship of the prices for the orders is not correct."
    assert v.balances()["BTC"].locked == 0 and v.open_orders() == []


def test_a_buy_list_rests_its_stop_above_and_target_below() -> None:
    v = at_100(venue(usdt="1000", btc="0"))
    buy_stop = leg("sl", OrderType.STOP_MARKET, "105", side="BUY")
    buy_target = leg("tp", OrderType.TAKE_PROFIT_MARKET, "95", side="BUY")
    assert kinds(v.submit_list("oc1", (buy_stop, buy_target), 1000))[0][0] == "OrderAccepted"


def test_without_a_last_price_only_the_legs_order_is_checked() -> None:
    v = venue()
    assert kinds(v.submit_list("oc1", (SL, TP), 1000))[0][0] == "OrderAccepted"
    w = venue()
    crossed = (leg("sl", OrderType.STOP_MARKET, "106"), TP)
    assert kinds(w.submit_list("oc1", crossed, 1000))[0][2] == "OCO_PRICES"


def test_malformed_lists_are_refused_whole() -> None:
    v = at_100(venue(btc="2"))
    two_stops = (SL, leg("sl2", OrderType.STOP_MARKET, "90"))
    assert {k[2] for k in kinds(v.submit_list("a", two_stops, 1000))} == {"OCO_INVALID"}
    uneven = (SL, leg("tp", OrderType.TAKE_PROFIT_MARKET, "105", qty="0.5"))
    assert {k[2] for k in kinds(v.submit_list("b", uneven, 1000))} == {"OCO_INVALID"}
    v.submit(leg("tp", OrderType.TAKE_PROFIT_MARKET, "110", qty="0.5"), 1000)
    assert {k[2] for k in kinds(v.submit_list("c", (SL, TP), 1000))} == {
        "DUPLICATE_CLIENT_ORDER_ID"
    }
    book_up = at_100(venue())
    book_up.on_book("BTCUSDT", book([(105.5, 1.0)], [(105.6, 1.0)]), 1500)  # bids above 105
    maker = (SL, leg("tp", OrderType.LIMIT, None, price="105"))
    assert {k[2] for k in kinds(book_up.submit_list("d", maker, 1500))} == {"POST_ONLY_WOULD_TAKE"}


def test_a_list_the_balance_cannot_cover_locks_nothing() -> None:
    v = at_100(venue(btc="0.5"))
    events = v.submit_list("oc1", (SL, TP), 1000)
    assert {k[2] for k in kinds(events)} == {"INSUFFICIENT_BALANCE"}
    assert v.balances()["BTC"].free == D("0.5") and v.balances()["BTC"].locked == 0


def test_futures_have_no_order_lists() -> None:
    cfg = SimulatedVenueConfig(market=Market.USDM, fees=FEES)
    fut = Instrument("BTCUSDT", Market.USDM, D("0.1"), D("0.001"), min_qty=D("0.001"))
    v = SimulatedVenue([fut], {"USDT": D(1000)}, cfg)
    assert {k[2] for k in kinds(v.submit_list("oc1", (SL, TP), 1000))} == {"OCO_INVALID"}


def test_a_list_arrives_after_the_latency_like_any_order() -> None:
    v = at_100(venue(latency_ms=50))
    assert v.submit_list("oc1", (SL, TP), 1000) == []
    assert kinds(v.advance(1050)) == [("OrderAccepted", "sl", ""), ("OrderAccepted", "tp", "")]


def test_an_order_list_command_names_two_matching_legs() -> None:
    assert SubmitOrderList("tl-BTCUSDT-1-oc1", (SL, TP), 1000).symbol == "BTCUSDT"
    with pytest.raises(ValueError, match="exactly two"):
        SubmitOrderList("x", (SL,), 1000)
    with pytest.raises(ValueError, match="share symbol, side and quantity"):
        SubmitOrderList("x", (SL, leg("tp", OrderType.TAKE_PROFIT_MARKET, "105", qty="2")), 1000)
    with pytest.raises(ValueError, match="distinct"):
        SubmitOrderList("x", (SL, SL), 1000)
    with pytest.raises(ValueError, match="1..36"):
        SubmitOrderList("x" * 37, (SL, TP), 1000)
