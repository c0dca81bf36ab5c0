"""Portfolio: ledger, valuation, dedup, summary line, equity curve grid, and agreement with the
simulated venue's own accounts over a seeded run (two independent implementations)."""

from __future__ import annotations

import random
from decimal import Decimal as D

from engine.events import TradePrinted
from engine.model import Instrument, Market, Side
from engine.orders import FundingPaid, Liquidity, OrderFilled, OrderIntent, OrderType
from exchange.book import OrderBook
from exchange.simulated import SimulatedVenue, SimulatedVenueConfig
from portfolio.ledger import Ledger
from portfolio.portfolio import EquityCurve, EquityPoint, Portfolio, SummaryTicker, summary_line

SPOT = Instrument(
    "BTCUSDT", Market.SPOT, D("0.01"), D("0.001"), base_asset="BTC", quote_asset="USDT"
)
PERP = Instrument(
    "BTCUSDT", Market.USDM, D("0.1"), D("0.001"), base_asset="BTC", quote_asset="USDT"
)


def fill(side, qty, price, fee, ts, fee_asset="USDT", trade_id=None) -> OrderFilled:
    return OrderFilled(
        "BTCUSDT",
        "c",
        trade_id or ts,
        Side(side),
        D(price),
        D(qty),
        D(fee),
        fee_asset,
        Liquidity.TAKER,
        ts,
        True,
    )


def test_spot_fills_move_balances_and_equity_at_marks():
    p = Portfolio([SPOT], {"USDT": D(1000), "BNB": D(2)})
    p.apply(fill("BUY", "1", "100", "0.1", 1))
    assert p.ledger.balances == {"USDT": D("899.9"), "BTC": D(1), "BNB": D(2)}
    p.mark("BTCUSDT", 110.0)
    assert p.equity() == D("899.9") + D(110)  # BNB has no mark: counted as zero
    assert p.unvalued_assets() == ["BNB"]
    # Binance charges spot fees in the received asset: the BTC fee leaves BTC, costs 0.1 USDT in PnL
    p.apply(fill("BUY", "1", "100", "0.001", 2, fee_asset="BTC"))
    assert p.ledger.get("BTC") == D("1.999") and p.ledger.get("USDT") == D("799.9")
    assert p.positions["BTCUSDT"].fees == D("0.2")
    assert p.gross_exposure() == D(220) and p.unrealized_pnl() == D(20)


def test_duplicate_fills_count_once():
    p = Portfolio([SPOT], {"USDT": D(1000)})
    p.apply(fill("BUY", "1", "100", "0", 1, trade_id=7))
    p.apply(fill("BUY", "1", "100", "0", 1, trade_id=7))
    assert p.ledger.get("BTC") == D(1) and p.duplicate_fills == 1


def test_futures_wallet_moves_by_realised_pnl_fees_and_funding_only():
    p = Portfolio([PERP], {"USDT": D(1000)})
    p.apply(fill("SELL", "2", "100", "0.1", 1))
    assert p.ledger.balances == {"USDT": D("999.9")}
    p.mark("BTCUSDT", D(90))
    assert p.equity() == D("999.9") + D(20)
    p.apply(FundingPaid("BTCUSDT", D("0.02"), D("0.0001"), "USDT", 2))
    closed = p.apply(fill("BUY", "2", "90", "0.09", 3))
    assert p.ledger.get("USDT") == D(1000) - D("0.1") + D("0.02") + D(20) - D("0.09")
    assert closed is not None and closed.pnl == D(20) - D("0.19") + D("0.02")
    fields = p.summary_fields()
    assert fields["realized_pnl"] == 20.0 and fields["fees"] == 0.19 and fields["funding"] == 0.02
    assert fields["trades"] == 1 and fields["positions"] == {}


def test_summary_line_reads_like_the_log():
    p = Portfolio([PERP], {"USDT": D(1000)})
    curve = EquityCurve()
    curve.record(EquityPoint(0, 1000.0, 0.0))
    curve.record(EquityPoint(60_000, 1100.0, 0.0))
    p.apply(fill("BUY", "0.5", "100", "0", 1))
    p.mark("BTCUSDT", D(120))
    line = summary_line(p.summary_fields(curve))
    # equity 1000 + 10 upnl; start 1000 -> +1 %; peak 1100 -> drawdown 1 - 1010/1100 = 8.18 %
    assert line == (
        "equity=1010.00 USDT return=+1.00% dd=8.18% realised=+0.00 unrealised=+10.00 fees=0.00 "
        "funding=+0.00 exposure=60.00 trades=0 positions=BTCUSDT:+0.5@100"
    )


def test_equity_curve_and_summary_ticker_keep_a_grid_of_exchange_time():
    p = Portfolio([PERP], {"USDT": D(1000)})
    curve = EquityCurve(interval_ms=60_000)
    taken = [
        ts for ts in (1_000, 30_000, 59_999, 60_000, 61_000, 185_000) if curve.maybe_record(ts, p)
    ]
    assert taken == [1_000, 60_000, 185_000]
    ticker = SummaryTicker(60_000)
    assert [ts for ts in (5, 59_999, 60_000, 119_999, 240_001) if ticker.due(ts)] == [
        5,
        60_000,
        240_001,
    ]


def test_ledger_is_immutable():
    a = Ledger.of({"USDT": D(1)})
    b = a.credit({"USDT": D(2), "BTC": D(0)})
    assert a.get("USDT") == 1 and b.get("USDT") == 3 and "BTC" not in b.balances


def test_portfolio_agrees_with_the_simulated_venue_accounts():
    """Fold a seeded futures session's events; wallet and positions must equal the venue's."""
    rng = random.Random(3)
    venue = SimulatedVenue(
        [PERP], {"USDT": D(100_000)}, SimulatedVenueConfig(market=Market.USDM, leverage=5)
    )
    p = Portfolio([PERP], {"USDT": D(100_000)})
    book = OrderBook("BTCUSDT", "0.1")
    mid = 1000.0
    for step in range(600):
        ts = step * 100
        mid = round(mid + rng.choice((-1.0, -0.5, 0.5, 1.0)), 1)
        book.load_snapshot(
            [(round(mid - 0.5, 1), 1.0), (round(mid - 1, 1), 5.0)],
            [(round(mid + 0.5, 1), 1.0), (round(mid + 1, 1), 5.0)],
        )
        events = venue.on_book("BTCUSDT", book, ts)
        events += venue.on_trade(
            TradePrinted(
                symbol="BTCUSDT",
                ts_event_ms=ts,
                ts_trade_ms=ts,
                ts_recv_ns=0,
                trade_id=step,
                price=mid,
                qty=1.0,
                buyer_is_maker=rng.random() < 0.5,
            )
        )
        if step % 7 == 0:
            kind = rng.choice((OrderType.MARKET, OrderType.LIMIT))
            intent = OrderIntent(
                f"o{step}",
                "BTCUSDT",
                rng.choice((Side.BUY, Side.SELL)),
                kind,
                D(rng.choice(("0.5", "1.5", "3"))),
                price=D(f"{mid:.1f}") if kind is OrderType.LIMIT else None,
            )
            events += venue.submit(intent, ts)
        for event in events:
            p.apply(event)
    assert len(p.closed_trades) >= 5
    assert p.ledger.get("USDT") == venue.balances()["USDT"].total
    venue_positions = {s: (v.qty, v.entry_price) for s, v in venue.positions().items()}
    assert {s: (q.qty, q.avg_price) for s, q in p.open_positions().items()} == venue_positions
