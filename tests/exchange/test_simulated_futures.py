"""Simulated venue, USDⓈ-M: positions, realised PnL, margin, reduce-only, funding, mark triggers,
and the async ExecutionVenue shell. Fees 2 bps maker / 5 bps taker; tick 0.1, step 0.001.
"""

from __future__ import annotations

from decimal import Decimal as D

from engine.events import DepthDiff, MarkPriceUpdated, TradePrinted
from engine.model import Instrument, Market, Side
from engine.orders import (
    FundingPaid,
    OrderAccepted,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    OrderType,
)
from exchange.base import ExecutionVenue, VenuePosition
from exchange.book import OrderBook
from exchange.simulated import SimulatedVenue, SimulatedVenueConfig, TriggerSource
from exchange.simulated_shell import SimulatedExecutionVenue

BTC = Instrument(
    "BTCUSDT",
    Market.USDM,
    D("0.1"),
    D("0.001"),
    min_qty=D("0.001"),
    max_qty=D(1000),
    min_notional=D(5),
    base_asset="BTC",
    quote_asset="USDT",
)
EIGHT_HOURS_MS = 8 * 3600 * 1000


def venue(wallet: str = "10000", leverage: int = 10, **config) -> SimulatedVenue:
    cfg = SimulatedVenueConfig(market=Market.USDM, leverage=leverage, **config)
    return SimulatedVenue([BTC], {"USDT": D(wallet)}, cfg)


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


def mark(price: float, rate: float, ts: int, next_funding_ms: int) -> MarkPriceUpdated:
    return MarkPriceUpdated(
        symbol="BTCUSDT",
        ts_event_ms=ts,
        ts_recv_ns=0,
        mark_price=price,
        index_price=price,
        funding_rate=rate,
        next_funding_ms=next_funding_ms,
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


def at(v: SimulatedVenue, price: float, ts: int) -> None:
    """Put a one-level book around price (bid 0.1 below, ask at price, deep)."""
    v.on_book("BTCUSDT", book([(round(price - 0.1, 1), 100.0)], [(price, 100.0)]), ts)


def test_long_then_close_realises_pnl_minus_taker_fees():
    v = venue()
    at(v, 100.0, 1000)
    buy = v.submit(order("o1", "BUY", "1"), 1000)
    assert [e.fee for e in buy if isinstance(e, OrderFilled)] == [D("0.05")]  # 100 * 5 bps
    assert v.positions() == {"BTCUSDT": VenuePosition("BTCUSDT", D(1), D("100.0"))}
    v.on_book("BTCUSDT", book([(110.0, 100.0)], [(110.1, 100.0)]), 2000)
    sell = v.submit(order("o2", "SELL", "1"), 2000)
    assert [(e.price, e.fee) for e in sell if isinstance(e, OrderFilled)] == [
        (D("110.0"), D("0.055"))
    ]
    assert v.positions() == {}
    assert v.balances()["USDT"].total == D(10000) + D(10) - D("0.05") - D("0.055")


def test_short_profit_and_flip_through_zero():
    v = venue()
    at(v, 100.0, 1000)
    v.submit(order("s", "SELL", "2"), 1000)  # short 2 @ 99.9 (the bid)
    at(v, 90.0, 2000)
    v.submit(order("b", "BUY", "3"), 2000)  # closes 2 @ 90.0 (+19.8), opens long 1 @ 90.0
    assert v.positions()["BTCUSDT"] == VenuePosition("BTCUSDT", D(1), D("90.0"))
    fees = D(2) * D("99.9") * D("0.0005") + D(3) * D("90.0") * D("0.0005")
    assert v.balances()["USDT"].total == D(10000) + D("19.8") - fees


def test_margin_is_notional_over_leverage():
    v = venue(wallet="100", leverage=2)
    at(v, 100.0, 1000)
    # 3 @ 99.0 needs 148.5 of margin > 100
    [rejected] = v.submit(order("l", "BUY", "3", OrderType.LIMIT, price="99.0"), 1000)
    assert rejected.reason == "INSUFFICIENT_BALANCE"
    assert isinstance(
        v.submit(order("l2", "BUY", "2", OrderType.LIMIT, price="99.0"), 1000)[0], OrderAccepted
    )
    assert v.balances()["USDT"].locked == D("99.0")  # 2 * 99.0 / 2
    # a market buy of 0.1 @ 100.0 needs 5 + fee, only 1 is left
    assert v.submit(order("m", "BUY", "0.1"), 1000)[0].reason == "INSUFFICIENT_BALANCE"
    # closing side orders need no margin for the part that reduces the position
    v.cancel("BTCUSDT", "l2", 1001)
    v.submit(order("m2", "BUY", "1.5"), 1001)
    assert isinstance(
        v.submit(order("c", "SELL", "1.5", OrderType.LIMIT, price="101.0"), 1001)[0], OrderAccepted
    )


def test_reduce_only_is_honoured_and_exempt_from_min_notional():
    v = venue()
    at(v, 100.0, 1000)
    [rejected] = v.submit(order("r0", "SELL", "1", reduce_only=True), 1000)
    assert rejected.reason == "REDUCE_ONLY_REJECTED"
    v.submit(order("o1", "BUY", "1"), 1000)
    events = v.submit(order("r1", "SELL", "2", reduce_only=True), 1000)
    assert [e.quantity for e in events if isinstance(e, OrderFilled)] == [D(1)]
    assert events[-1] == OrderExpired("BTCUSDT", "r1", 1000, "REDUCE_ONLY_REJECTED")
    assert v.positions() == {}
    v.submit(order("o2", "BUY", "0.01"), 1000)  # 1.0 notional: below 5 is rejected ...
    assert v.positions() == {}
    v.submit(order("o3", "BUY", "0.06"), 1000)
    # ... except when reduce-only: 0.04 * 99.9 = 3.996 < 5 is fine
    assert isinstance(v.submit(order("r2", "SELL", "0.04", reduce_only=True), 1000)[1], OrderFilled)


def test_funding_settles_at_funding_time_longs_pay_positive_rates():
    v = venue()
    at(v, 100.0, 1000)
    v.on_mark_price(mark(100.0, 0.0001, 1000, EIGHT_HOURS_MS))
    v.submit(order("o1", "BUY", "2"), 1000)
    v.on_mark_price(mark(101.0, 0.0002, EIGHT_HOURS_MS - 1000, EIGHT_HOURS_MS))
    wallet = v.balances()["USDT"].total
    events = v.on_mark_price(mark(101.5, 0.0003, EIGHT_HOURS_MS + 1000, 2 * EIGHT_HOURS_MS))
    # 2 long * mark 101.0 * rate 0.0002 (the last seen before the funding time) = 0.0404 paid
    assert events == [FundingPaid("BTCUSDT", D("-0.0404"), D("0.0002"), "USDT", EIGHT_HOURS_MS)]
    assert v.balances()["USDT"].total == wallet - D("0.0404")
    assert (
        v.on_mark_price(mark(101.5, 0.0003, EIGHT_HOURS_MS + 2000, EIGHT_HOURS_MS)) == []
    )  # stale time
    at(v, 100.0, EIGHT_HOURS_MS + 3000)
    v.submit(order("o2", "SELL", "5"), EIGHT_HOURS_MS + 3000)  # now short 3
    events = v.on_mark_price(mark(100.0, 0.0001, 2 * EIGHT_HOURS_MS, 3 * EIGHT_HOURS_MS))
    assert events == [FundingPaid("BTCUSDT", D("0.09135"), D("0.0003"), "USDT", 2 * EIGHT_HOURS_MS)]


def test_stop_on_mark_price_when_configured():
    v = venue(stop_trigger=TriggerSource.MARK)
    at(v, 100.0, 1000)
    v.on_mark_price(mark(100.0, 0.0, 1000, EIGHT_HOURS_MS))
    v.submit(order("o1", "BUY", "1"), 1000)
    v.submit(order("sl", "SELL", "1", OrderType.STOP_MARKET, stop="95.0", reduce_only=True), 1000)
    assert v.on_trade(trade(94.0, 1.0, 1001)) == []  # last price through the stop: not the trigger
    at(v, 95.0, 1002)
    events = v.on_mark_price(mark(94.9, 0.0, 1003, EIGHT_HOURS_MS))
    assert [(e.price, e.quantity) for e in events if isinstance(e, OrderFilled)] == [
        (D("94.9"), D(1))
    ]
    assert v.positions() == {}


def test_protective_stop_without_position_expires_at_trigger():
    v = venue()
    at(v, 100.0, 1000)
    v.on_trade(trade(100.0, 1.0, 1000))
    assert isinstance(
        v.submit(
            order("sl", "SELL", "1", OrderType.STOP_MARKET, stop="95.0", reduce_only=True), 1000
        )[0],
        OrderAccepted,
    )  # algo orders are not checked until they trigger
    events = v.on_trade(trade(95.0, 1.0, 1001))
    assert events == [OrderExpired("BTCUSDT", "sl", 1001, "REDUCE_ONLY_REJECTED")]


async def test_execution_venue_shell_delivers_events_to_the_sink_in_exchange_time():
    core = SimulatedVenue(
        [BTC], {"USDT": D(1000)}, SimulatedVenueConfig(market=Market.USDM, latency_ms=5)
    )
    b = OrderBook("BTCUSDT", "0.1")
    shell = SimulatedExecutionVenue(core, book_of=lambda symbol: b)
    venue_api: ExecutionVenue = shell  # satisfies the protocol
    received: list[OrderEvent] = []
    b.load_snapshot([(99.9, 1.0)], [(100.0, 1.0)])
    shell.on_market_event(
        DepthDiff(
            symbol="BTCUSDT",
            ts_event_ms=5000,
            ts_recv_ns=0,
            first_update_id=1,
            final_update_id=1,
            prev_final_update_id=None,
            bids=[],
            asks=[],
        )
    )
    await venue_api.submit(order("o1", "BUY", "0.5", OrderType.LIMIT, price="99.0"))
    shell.set_event_sink(received.append)
    assert received == []  # sent at 5000, arrives at 5005
    shell.on_market_event(trade(99.9, 0.1, 5010))
    assert received == [OrderAccepted("BTCUSDT", "o1", "1", 5005)]
    [open_order] = await venue_api.open_orders("BTCUSDT")
    assert open_order.client_order_id == "o1"
    await venue_api.cancel("BTCUSDT", "o1")
    shell.advance(5015)
    assert [type(e).__name__ for e in received] == ["OrderAccepted", "OrderCanceled"]
    assert received[1].ts_event_ms == 5015
    assert (await venue_api.balances())["USDT"].locked == 0
    assert await venue_api.positions() == {}
    assert not any(isinstance(e, OrderRejected) for e in received)
