"""Simulated venue, spot: hand-built books and trades with fills worked out by hand.

Instrument: tick 0.1, step 0.001, min notional 5; fees 10 bps maker and taker unless stated.
"""

from __future__ import annotations

import random
from decimal import Decimal as D

from engine.events import TradePrinted
from engine.model import Instrument, Market, Side
from engine.orders import (
    Liquidity,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    OrderType,
    TimeInForce,
)
from exchange.book import OrderBook
from exchange.simulated import QueueModel, SimulatedVenue, SimulatedVenueConfig
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


def venue(usdt: str = "1000", btc: str = "0", latency_ms: int = 0, **config) -> SimulatedVenue:
    cfg = SimulatedVenueConfig(market=Market.SPOT, latency_ms=latency_ms, fees=FEES, **config)
    return SimulatedVenue([BTC], {"USDT": D(usdt), "BTC": D(btc)}, cfg)


def book(bids, asks) -> OrderBook:
    b = OrderBook("BTCUSDT", "0.1")
    b.load_snapshot(bids, asks)
    return b


def trade(price: float, qty: float, ts: int, seller_aggressor: bool = True) -> TradePrinted:
    return TradePrinted(
        symbol="BTCUSDT",
        ts_event_ms=ts,
        ts_trade_ms=ts,
        ts_recv_ns=0,
        trade_id=ts,
        price=price,
        qty=qty,
        buyer_is_maker=seller_aggressor,
    )


def order(cid, side, qty, type=OrderType.MARKET, price=None, stop=None, **kw) -> OrderIntent:
    return OrderIntent(
        client_order_id=cid,
        symbol="BTCUSDT",
        side=Side(side),
        type=type,
        quantity=D(qty),
        price=None if price is None else D(price),
        stop_price=None if stop is None else D(stop),
        **kw,
    )


def fills(events):
    return [
        (e.price, e.quantity, e.fee, e.liquidity, e.order_complete)
        for e in events
        if isinstance(e, OrderFilled)
    ]


BOOK = ([(99.0, 2.0), (98.5, 1.0)], [(100.0, 0.5), (100.5, 1.0), (101.0, 2.0)])


def test_market_buy_walks_the_book_at_level_prices_with_taker_fees():
    v = venue()
    v.on_book("BTCUSDT", book(*BOOK), 1000)
    events = v.submit(order("m1", "BUY", "1.2"), 1000)
    assert isinstance(events[0], OrderAccepted) and events[0].venue_order_id == "1"
    # 0.5 @ 100.0 (fee 0.05) then 0.7 @ 100.5 (fee 0.07035)
    assert fills(events) == [
        (D("100.0"), D("0.5"), D("0.05"), Liquidity.TAKER, False),
        (D("100.5"), D("0.7"), D("0.07035"), Liquidity.TAKER, True),
    ]
    assert [e.trade_id for e in events if isinstance(e, OrderFilled)] == [1, 2]
    bal = v.balances()
    assert bal["USDT"].free == D(1000) - D("50.0") - D("0.05") - D("70.35") - D("0.07035")
    assert bal["BTC"].free == D("1.2")
    assert v.open_orders() == []


def test_market_order_larger_than_the_book_fills_what_exists_and_expires_the_rest():
    v = venue(usdt="10000")
    v.on_book("BTCUSDT", book(*BOOK), 1000)
    events = v.submit(order("m1", "BUY", "4"), 1000)
    assert [f[1] for f in fills(events)] == [D("0.5"), D("1.0"), D("2.0")]
    assert isinstance(events[-1], OrderExpired) and events[-1].reason == "NO_LIQUIDITY"


def test_liquidity_taken_stays_taken_until_the_level_changes():
    v = venue(usdt="10000")
    b = book(*BOOK)
    v.on_book("BTCUSDT", b, 1000)
    first = fills(v.submit(order("a", "BUY", "0.3"), 1000))
    second = fills(v.submit(order("b", "BUY", "0.3"), 1000))
    assert [(p, q) for p, q, *_ in first] == [(D("100.0"), D("0.3"))]
    assert [(p, q) for p, q, *_ in second] == [(D("100.0"), D("0.2")), (D("100.5"), D("0.1"))]
    b.apply([], [(100.0, 0.8)])  # the market re-states the level: all of it is available again
    v.on_book("BTCUSDT", b, 1001)
    third = fills(v.submit(order("c", "BUY", "0.3"), 1001))
    assert [(p, q) for p, q, *_ in third] == [(D("100.0"), D("0.3"))]


def test_latency_delays_activation_to_the_book_of_the_arrival_time():
    v = venue(latency_ms=50)
    b = book(*BOOK)
    v.on_book("BTCUSDT", b, 1000)
    assert v.submit(order("m1", "BUY", "0.5"), 1000) == []
    assert v.on_book("BTCUSDT", b, 1049) == []  # not arrived yet
    b.apply([], [(100.0, 0.0), (100.2, 3.0)])  # the ask moved before our order arrived
    events = v.on_book("BTCUSDT", b, 1060)
    assert events[0] == OrderAccepted("BTCUSDT", "m1", "1", 1050)
    assert fills(events) == [(D("100.2"), D("0.5"), D("0.0501"), Liquidity.TAKER, True)]
    assert events[1].ts_event_ms == 1050


def test_resting_limit_fills_through_price_and_after_the_visible_queue_at_price():
    v = venue()
    v.on_book("BTCUSDT", book(*BOOK), 1000)
    assert v.submit(order("l1", "BUY", "1", OrderType.LIMIT, price="99.0"), 1000) == [
        OrderAccepted("BTCUSDT", "l1", "1", 1000)
    ]
    assert v.balances()["USDT"].locked == D("99.0") * 1 * D("1.001")
    # seller hits 98.9, strictly through our 99.0: fill at our price as maker (fee 0.0396)
    assert fills(v.on_trade(trade(98.9, 0.4, 1001))) == [
        (D("99.0"), D("0.4"), D("0.0396"), Liquidity.MAKER, False)
    ]
    # a buyer lifting asks below our bid is not our counterparty (the book-cross rule covers it)
    assert v.on_trade(trade(98.8, 5.0, 1002, seller_aggressor=False)) == []
    # 2.0 was visible at 99.0 when we arrived: 1.5 traded at price leaves 0.5 ahead of us
    assert v.on_trade(trade(99.0, 1.5, 1003)) == []
    assert fills(v.on_trade(trade(99.0, 1.0, 1004))) == [
        (D("99.0"), D("0.5"), D("0.0495"), Liquidity.MAKER, False)
    ]
    assert fills(v.on_trade(trade(99.0, 1.0, 1005))) == [
        (D("99.0"), D("0.1"), D("0.0099"), Liquidity.MAKER, True)
    ]
    bal = v.balances()
    assert bal["BTC"].free == D("1.0")
    assert bal["USDT"].locked == 0
    assert bal["USDT"].free == D(1000) - D("99.0") - D("0.0396") - D("0.0495") - D("0.0099")


def test_through_queue_model_never_fills_at_price():
    v = venue(queue_model=QueueModel.THROUGH)
    v.on_book("BTCUSDT", book([(98.0, 1.0)], [(100.0, 1.0)]), 1000)
    v.submit(order("l1", "BUY", "1", OrderType.LIMIT, price="99.0"), 1000)
    assert v.on_trade(trade(99.0, 10.0, 1001)) == []
    assert fills(v.on_trade(trade(98.9, 0.25, 1002)))[0][:2] == (D("99.0"), D("0.25"))


def test_queue_is_empty_when_our_price_level_leaves_the_book():
    v = venue()
    b = book(*BOOK)
    v.on_book("BTCUSDT", b, 1000)
    v.submit(order("l1", "BUY", "1", OrderType.LIMIT, price="99.0"), 1000)
    b.apply([(99.0, 0.0)], [])  # everybody ahead of us at 99.0 left: best bid is now 98.5
    v.on_book("BTCUSDT", b, 1001)
    assert fills(v.on_trade(trade(99.0, 0.3, 1002)))[0][:2] == (D("99.0"), D("0.3"))


def test_resting_limit_fills_when_the_opposite_side_crosses_it():
    v = venue()
    b = book(*BOOK)
    v.on_book("BTCUSDT", b, 1000)
    v.submit(order("l1", "BUY", "1", OrderType.LIMIT, price="99.0"), 1000)
    b.apply([], [(98.9, 0.3), (99.0, 0.5)])
    assert fills(v.on_book("BTCUSDT", b, 1001)) == [
        (D("99.0"), D("0.3"), D("0.0297"), Liquidity.MAKER, False),
        (D("99.0"), D("0.5"), D("0.0495"), Liquidity.MAKER, False),
    ]
    assert v.on_book("BTCUSDT", b, 1002) == []  # same levels: already taken
    b.apply([], [(98.9, 0.6)])
    assert fills(v.on_book("BTCUSDT", b, 1003)) == [
        (D("99.0"), D("0.2"), D("0.0198"), Liquidity.MAKER, True)
    ]


def test_marketable_limit_takes_up_to_its_price_then_rests_the_rest():
    v = venue()
    v.on_book("BTCUSDT", book(*BOOK), 1000)
    events = v.submit(order("l1", "BUY", "2", OrderType.LIMIT, price="100.5"), 1000)
    assert [(p, q, liq) for p, q, _, liq, _ in fills(events)] == [
        (D("100.0"), D("0.5"), Liquidity.TAKER),
        (D("100.5"), D("1.0"), Liquidity.TAKER),
    ]
    [resting] = v.open_orders()
    assert resting.filled_quantity == D("1.5") and resting.status == "PARTIALLY_FILLED"


def test_time_in_force_ioc_fok_and_post_only():
    v = venue(usdt="10000")
    v.on_book("BTCUSDT", book(*BOOK), 1000)
    ioc = v.submit(
        order("i", "BUY", "1", OrderType.LIMIT, price="100.0", time_in_force=TimeInForce.IOC), 1000
    )
    assert [f[1] for f in fills(ioc)] == [D("0.5")]
    assert ioc[-1] == OrderExpired("BTCUSDT", "i", 1000, "IOC_REMAINDER")
    fok = v.submit(
        order("f", "BUY", "5", OrderType.LIMIT, price="101.0", time_in_force=TimeInForce.FOK), 1000
    )
    assert fills(fok) == [] and fok[-1] == OrderExpired("BTCUSDT", "f", 1000, "FOK_NOT_FILLED")
    gtx = v.submit(
        order("g", "BUY", "1", OrderType.LIMIT, price="100.5", time_in_force=TimeInForce.GTX), 1000
    )
    assert fills(gtx) == [] and gtx[-1] == OrderExpired(
        "BTCUSDT", "g", 1000, "POST_ONLY_WOULD_TAKE"
    )
    assert v.balances()["USDT"].locked == 0


def test_stop_market_sell_triggers_on_trade_price_and_walks_the_bids():
    v = venue(btc="2")
    v.on_book("BTCUSDT", book(*BOOK), 1000)
    v.on_trade(trade(99.5, 0.1, 1000))
    events = v.submit(order("s1", "SELL", "2.5", OrderType.STOP_MARKET, stop="99.0"), 1000)
    assert isinstance(events[0], OrderRejected) and events[0].reason == "INSUFFICIENT_BALANCE"
    assert v.submit(order("s1", "SELL", "2.5", OrderType.STOP_MARKET, stop="99.5"), 1000)[
        0
    ].reason == ("WOULD_TRIGGER_IMMEDIATELY")
    assert isinstance(
        v.submit(order("s2", "SELL", "1.5", OrderType.STOP_MARKET, stop="99.0"), 1000)[0],
        OrderAccepted,
    )
    assert v.balances()["BTC"].locked == D("1.5")
    assert v.on_trade(trade(99.1, 0.1, 1001)) == []
    events = v.on_trade(trade(99.0, 0.1, 1002))
    # sells 1.5 into bids 2.0 @ 99.0: fee 0.1485
    assert fills(events) == [(D("99.0"), D("1.5"), D("0.1485"), Liquidity.TAKER, True)]
    assert v.balances()["BTC"].free == D("0.5") and v.balances()["BTC"].locked == 0


def test_take_profit_and_stop_limit_trigger_rules():
    v = venue(btc="1")
    b = book([(104.0, 1.0)], [(105.0, 1.0)])
    v.on_book("BTCUSDT", b, 1000)
    v.on_trade(trade(104.5, 0.1, 1000))
    # TAKE_PROFIT SELL triggers when price >= stop; a TP SELL below the market triggers at once
    assert v.submit(order("t0", "SELL", "0.5", OrderType.TAKE_PROFIT_MARKET, stop="104.0"), 1000)[
        0
    ].reason == ("WOULD_TRIGGER_IMMEDIATELY")
    v.submit(order("tp", "SELL", "0.5", OrderType.TAKE_PROFIT_MARKET, stop="106.0"), 1000)
    # STOP_LIMIT SELL below the market: triggers at <= 103.0, then a limit at 103.5 that rests
    v.submit(order("sl", "SELL", "0.5", OrderType.STOP_LIMIT, price="103.5", stop="103.0"), 1000)
    assert v.on_trade(trade(105.9, 0.1, 1001, seller_aggressor=False)) == []
    b.apply([(106.0, 1.0)], [(105.0, 0.0), (106.5, 1.0)])
    v.on_book("BTCUSDT", b, 1002)
    tp = v.on_trade(trade(106.0, 0.1, 1003, seller_aggressor=False))
    assert fills(tp) == [(D("106.0"), D("0.5"), D("0.053"), Liquidity.TAKER, True)]
    b.apply([(106.0, 0.0), (104.0, 0.0), (102.0, 1.0)], [(106.5, 0.0), (104.0, 1.0)])
    v.on_book("BTCUSDT", b, 1004)
    assert (
        v.on_trade(trade(103.0, 0.1, 1005)) == []
    )  # triggered; 103.5 is above the 102.0 bid: rests
    [resting] = v.open_orders()
    assert resting.client_order_id == "sl" and resting.intent.price == D("103.5")
    assert fills(v.on_trade(trade(103.6, 0.2, 1006, seller_aggressor=False))) == [
        (D("103.5"), D("0.2"), D("0.0207"), Liquidity.MAKER, False)
    ]


def test_trailing_stop_sell_follows_the_high():
    v = venue(btc="1")
    v.on_book("BTCUSDT", book([(95.0, 5.0)], [(105.0, 5.0)]), 1000)
    v.on_trade(trade(100.0, 0.1, 1000))
    v.submit(order("tr", "SELL", "1", OrderType.TRAILING_STOP_MARKET, callback_rate_pct=D(1)), 1000)
    assert v.on_trade(trade(102.0, 0.1, 1001)) == []
    assert v.on_trade(trade(101.0, 0.1, 1002)) == []  # 102 * 0.99 = 100.98 < 101.0
    events = v.on_trade(trade(100.9, 0.1, 1003))
    assert fills(events) == [(D("95.0"), D(1), D("0.095"), Liquidity.TAKER, True)]


def test_filters_rejected_as_binance_would():
    v = venue()
    v.on_book("BTCUSDT", book(*BOOK), 1000)
    cases = {
        "PRICE_FILTER": order("p", "BUY", "1", OrderType.LIMIT, price="99.05"),
        "LOT_SIZE": order("q", "BUY", "0.0005", OrderType.LIMIT, price="99.0"),
        "NOTIONAL": order("n", "BUY", "0.05", OrderType.LIMIT, price="99.0"),  # 4.95 < 5
    }
    for reason, intent in cases.items():
        [event] = v.submit(intent, 1000)
        assert isinstance(event, OrderRejected) and event.reason == reason, event
    # a market order is valued at the mid (no trade yet): 0.05 * 99.5 = 4.975 < 5
    assert v.submit(order("m", "BUY", "0.05"), 1000)[0].reason == "NOTIONAL"
    assert isinstance(
        v.submit(order("ok", "BUY", "0.051", OrderType.LIMIT, price="99.0"), 1000)[0], OrderAccepted
    )


def test_duplicate_client_order_id_among_open_orders_only():
    v = venue()
    v.on_book("BTCUSDT", book(*BOOK), 1000)
    v.submit(order("dup", "BUY", "0.1", OrderType.LIMIT, price="98.0"), 1000)
    [rejected] = v.submit(order("dup", "BUY", "0.1", OrderType.LIMIT, price="97.0"), 1000)
    assert rejected.reason == "DUPLICATE_CLIENT_ORDER_ID"
    assert v.cancel("BTCUSDT", "dup", 1001) == [OrderCanceled("BTCUSDT", "dup", 1001, "canceled")]
    assert isinstance(
        v.submit(order("dup", "BUY", "0.1", OrderType.LIMIT, price="97.0"), 1002)[0], OrderAccepted
    )


def test_spot_refuses_shorting_and_overspending():
    v = venue(usdt="100")
    v.on_book("BTCUSDT", book(*BOOK), 1000)
    assert v.submit(order("s", "SELL", "0.1"), 1000)[0].reason == "INSUFFICIENT_BALANCE"
    # 0.5 @ 100.0 + 0.5 @ 100.5 = 100.25 plus fee > 100
    assert v.submit(order("b", "BUY", "1"), 1000)[0].reason == "INSUFFICIENT_BALANCE"
    v.submit(order("l1", "BUY", "0.6", OrderType.LIMIT, price="99.0"), 1000)  # locks 59.4594
    assert v.submit(order("l2", "BUY", "0.5", OrderType.LIMIT, price="98.0"), 1000)[0].reason == (
        "INSUFFICIENT_BALANCE"
    )
    v.cancel("BTCUSDT", "l1", 1001)
    assert v.balances()["USDT"].free == D(100) and v.balances()["USDT"].locked == 0


def test_cancel_arriving_after_the_fill_does_nothing():
    v = venue(latency_ms=20)
    v.on_book("BTCUSDT", book(*BOOK), 1000)
    v.submit(order("l1", "BUY", "0.1", OrderType.LIMIT, price="99.0"), 1000)
    v.advance(1020)
    assert v.cancel("BTCUSDT", "l1", 1025) == []
    assert fills(v.on_trade(trade(98.0, 1.0, 1030)))  # fills before the cancel arrives at 1045
    assert v.advance(1045) == [] and v.unknown_cancels == 1


def _scripted_run(seed: int) -> list:
    """A long seeded mix of books, trades, orders and cancels; returns every event."""
    rng = random.Random(seed)
    v = venue(usdt="100000", btc="50", latency_ms=7)
    b = OrderBook("BTCUSDT", "0.1")
    mid = 1000.0
    events: list = []
    for step in range(1500):
        ts = 1000 + step * 3
        mid = round(mid + rng.choice((-0.5, 0.0, 0.5)), 1)
        b.load_snapshot(
            [(round(mid - 0.1 * (i + 1), 1), rng.choice((0.1, 0.5, 1.0))) for i in range(5)],
            [(round(mid + 0.1 * (i + 1), 1), rng.choice((0.1, 0.5, 1.0))) for i in range(5)],
        )
        events += v.on_book("BTCUSDT", b, ts)
        events += v.on_trade(
            trade(round(mid + rng.choice((-0.1, 0.1)), 1), 0.3, ts + 1, rng.random() < 0.5)
        )
        if step % 10 == 0:
            side = rng.choice(("BUY", "SELL"))
            kind = rng.choice((OrderType.MARKET, OrderType.LIMIT, OrderType.STOP_MARKET))
            offset = rng.choice((-1.0, 1.0)) * (1 if kind is OrderType.LIMIT else -1)
            px = f"{round(mid + offset * (1 if side == 'BUY' else -1) * -1, 1):.1f}"
            intent = order(
                f"o{step}",
                side,
                "0.2",
                kind,
                price=px if kind is OrderType.LIMIT else None,
                stop=px if kind is OrderType.STOP_MARKET else None,
            )
            events += v.submit(intent, ts + 2)
        if step % 25 == 5 and v.open_orders():
            events += v.cancel("BTCUSDT", v.open_orders()[0].client_order_id, ts + 2)
    return events


def test_same_inputs_give_identical_events():
    first, second = _scripted_run(7), _scripted_run(7)
    assert first == second
    assert sum(isinstance(e, OrderFilled) for e in first) > 50  # the run exercises matching
    trade_ids = [e.trade_id for e in first if isinstance(e, OrderFilled)]
    assert trade_ids == list(range(1, len(trade_ids) + 1))


def test_an_injected_validator_replaces_the_minimal_filters():
    """The composition root can hand the venue risk.filters' full validator (from exchangeInfo)."""
    from risk.filters import filter_failure, parse_exchange_filters

    entry = {
        "symbol": "BTCUSDT",
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": "0.1",
                "maxPrice": "1000",
                "tickSize": "0.1",
            },
            {"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "100", "stepSize": "0.001"},
            {"filterType": "NOTIONAL", "minNotional": "5", "maxNotional": "1000"},
            {
                "filterType": "PERCENT_PRICE_BY_SIDE",
                "bidMultiplierUp": "1.05",
                "bidMultiplierDown": "0.2",
                "askMultiplierUp": "5",
                "askMultiplierDown": "0.95",
            },
        ],
    }
    filters = parse_exchange_filters(entry, Market.SPOT)
    seen_references = []

    def validate(intent, reference):
        seen_references.append(reference)
        failure = filter_failure(
            filters,
            side=intent.side,
            order_type=intent.type,
            quantity=intent.quantity,
            price=intent.price,
            stop_price=intent.stop_price,
            reference_price=reference or D(0),
            reduce_only=intent.reduce_only,
            callback_rate_pct=intent.callback_rate_pct,
        )
        return None if failure is None else (failure.filter, str(failure))

    v = SimulatedVenue(
        [BTC], {"USDT": D(5000)}, SimulatedVenueConfig(fees=FEES), validator=validate
    )
    v.on_book("BTCUSDT", book(*BOOK), 1000)
    v.on_trade(trade(100.0, 0.1, 1000))
    # 105.1 > 1.05 x last trade 100.0: rejected by the band the minimal validator does not know
    [rejected] = v.submit(order("b1", "BUY", "0.1", OrderType.LIMIT, price="105.1"), 1000)
    assert rejected.reason == "PERCENT_PRICE_BY_SIDE"
    [rejected] = v.submit(order("b2", "BUY", "11", OrderType.LIMIT, price="95.0"), 1000)
    assert rejected.reason == "NOTIONAL"  # 1045 above maxNotional 1000
    assert isinstance(
        v.submit(order("b3", "BUY", "1", OrderType.LIMIT, price="95.0"), 1000)[0], OrderAccepted
    )
    assert seen_references == [D("100.0")] * 3
