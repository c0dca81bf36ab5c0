"""Simulated venue on real recorded Binance tapes (spot and USDⓈ-M BTCUSDT, ~6 minutes each).

A small scripted trader sends market and limit orders through the real market-data pipeline's
book. Checked independently of the venue: every taker fill sits on a level of the book as it was
when the order arrived (best level first, never more than the level held), every maker fill is at
its order's limit price and happens only when a trade reached that price or the opposite side
crossed it, two runs give identical events, and the portfolio fold of the events agrees with the
venue's own account.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal as D
from pathlib import Path

import pytest

from engine.config import FoldConfig
from engine.events import TradePrinted
from engine.marketdata import MarketDataPipeline, SymbolMarketData
from engine.model import Instrument, Market, Side
from engine.orders import (
    Liquidity,
    OrderEvent,
    OrderFilled,
    OrderIntent,
    OrderType,
)
from engine.tape import read_tape
from exchange.binance.parse import FrameDecoder
from exchange.simulated import SimulatedVenue, SimulatedVenueConfig
from portfolio.portfolio import Portfolio

INSTRUMENTS = {
    Market.SPOT: Instrument(
        "BTCUSDT", Market.SPOT, D("0.01"), D("0.00001"), D("0.00001"), D(9000), D(5), "BTC", "USDT"
    ),
    Market.USDM: Instrument(
        "BTCUSDT", Market.USDM, D("0.1"), D("0.001"), D("0.001"), D(1000), D(100), "BTC", "USDT"
    ),
}
QTY = {Market.SPOT: D("0.05"), Market.USDM: D("0.050")}


@dataclass
class Run:
    events: list[OrderEvent] = field(default_factory=list)
    taker_checks: int = 0
    maker_checks: int = 0


def _replay(
    path: Path, market: Market, latency_ms: int, max_frames: int
) -> tuple[Run, SimulatedVenue]:
    inst = INSTRUMENTS[market]
    venue = SimulatedVenue(
        [inst],
        {"USDT": D(1_000_000), "BTC": D(10)},
        SimulatedVenueConfig(market=market, latency_ms=latency_ms, leverage=5),
    )
    run = Run()
    limits: dict[str, D] = {}  # open limit orders: client id -> limit price

    def check_maker(events: list[OrderEvent], reached: object) -> None:
        for e in events:
            if isinstance(e, OrderFilled) and e.liquidity is Liquidity.MAKER:
                assert e.price == limits[e.client_order_id]
                assert reached(e)  # type: ignore[operator]
                run.maker_checks += 1

    def on_book(state: SymbolMarketData) -> None:
        if not state.book_valid or state.last_depth_event_ms is None:
            return
        book = state.book
        events = venue.on_book("BTCUSDT", book, state.last_depth_event_ms)
        check_maker(
            events,
            lambda e: (
                (D(repr(book.best_ask())) <= e.price)
                if e.side is Side.BUY
                else (D(repr(book.best_bid())) >= e.price)
            ),
        )
        run.events += events

    pipeline = MarketDataPipeline(
        market,
        ["BTCUSDT"],
        FoldConfig(),
        on_book_changed=on_book,
        tick_sizes={"BTCUSDT": inst.tick_size},
    )
    decoder = FrameDecoder(market)
    state = pipeline.symbols["BTCUSDT"]
    trades = 0
    for n, frame in enumerate(read_tape(path)):
        if n >= max_frames:
            break
        if frame.snapshot_symbol is not None:
            pipeline.on_snapshot(frame.snapshot_symbol, frame.payload, frame.ts_recv_ns)
            continue
        pipeline.on_frame(frame.payload, frame.ts_recv_ns)
        trade = decoder.decode(frame.payload, frame.ts_recv_ns)
        if not isinstance(trade, TradePrinted):
            continue
        events = venue.on_trade(trade)
        price = D(repr(trade.price))
        check_maker(
            events,
            lambda e, p=price, m=trade.buyer_is_maker: (
                (p <= e.price and m) if e.side is Side.BUY else (p >= e.price and not m)
            ),
        )
        run.events += events
        trades += 1
        if trades % 150 or not state.book_valid:
            continue
        step = trades // 150
        ts = trade.ts_event_ms
        side = Side.BUY if step % 2 else Side.SELL
        if step % 3 == 0:  # a market order; with no latency it must walk today's book exactly
            levels = state.book.levels("ask" if side is Side.BUY else "bid", 50)
            events = venue.submit(
                OrderIntent(f"m{step}", "BTCUSDT", side, OrderType.MARKET, QTY[market]), ts
            )
            if latency_ms == 0:
                _check_walk(events, levels, side, QTY[market])
                run.taker_checks += 1
            run.events += events
        else:  # a passive limit joining the best price; cancel the oldest after a while
            best = state.book.best_bid() if side is Side.BUY else state.book.best_ask()
            price = D(repr(best))
            cid = f"l{step}"
            limits[cid] = price
            run.events += venue.submit(
                OrderIntent(cid, "BTCUSDT", side, OrderType.LIMIT, QTY[market], price=price), ts
            )
            open_ids = [o.client_order_id for o in venue.open_orders()]
            if len(open_ids) > 4:
                run.events += venue.cancel("BTCUSDT", open_ids[0], ts)
    return run, venue


def _check_walk(
    events: list[OrderEvent], levels: list[tuple[float, float]], side: Side, qty: D
) -> None:
    """Taker fills take levels best first, each at most what the level showed, summing to qty."""
    fills = [e for e in events if isinstance(e, OrderFilled)]
    assert fills and sum(f.quantity for f in fills) == qty
    book = {D(repr(p)): D(repr(q)) for p, q in levels}
    prices = [D(repr(p)) for p, _ in levels]
    used = [f.price for f in fills]
    assert used == prices[: len(used)]  # consecutive levels from the best
    for f in fills[:-1]:
        assert f.quantity <= book[f.price]
    assert all(f.liquidity is Liquidity.TAKER for f in fills)


@pytest.mark.parametrize(
    ("name", "market", "max_frames"),
    [
        ("spot_btcusdt", Market.SPOT, 50_000),
        ("usdm_btcusdt", Market.USDM, 45_000),
    ],
)
def test_real_tape_fills_are_consistent_and_deterministic(tapes, name, market, max_frames):
    path = tapes[name]
    run, venue = _replay(path, market, 0, max_frames)
    fills = [e for e in run.events if isinstance(e, OrderFilled)]
    assert run.taker_checks >= 10 and run.maker_checks >= 5, (run.taker_checks, run.maker_checks)
    assert [f.trade_id for f in fills] == list(range(1, len(fills) + 1))
    portfolio = Portfolio(
        [INSTRUMENTS[market]],
        {"USDT": D(1_000_000), "BTC": D(10)} if market is Market.SPOT else {"USDT": D(1_000_000)},
    )
    for event in run.events:
        portfolio.apply(event)
    venue_totals = {a: b.total for a, b in venue.balances().items()}
    assert {a: v for a, v in portfolio.ledger.balances.items() if a in venue_totals} == venue_totals
    again, _ = _replay(path, market, 0, max_frames)
    assert again.events == run.events


def test_real_tape_with_latency_is_deterministic(tapes):
    first, _ = _replay(tapes["spot_btcusdt"], Market.SPOT, 35, 30_000)
    second, _ = _replay(tapes["spot_btcusdt"], Market.SPOT, 35, 30_000)
    assert first.events == second.events
    assert sum(isinstance(e, OrderFilled) for e in first.events) >= 10
    # with latency, outcomes are stamped with the arrival time, never before the sending trade
    assert first.maker_checks >= 1
