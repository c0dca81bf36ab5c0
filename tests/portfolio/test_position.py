"""Position fold and round trips, checked against hand-worked numbers."""

from __future__ import annotations

from decimal import Decimal as D

from engine.model import Side
from engine.orders import FundingPaid, Liquidity, OrderFilled
from portfolio.position import ClosedTrade, Position, fold_positions


def fill(side: str, qty: str, price: str, fee: str, ts: int, trade_id: int = 0) -> OrderFilled:
    return OrderFilled(
        "BTCUSDT",
        f"c{ts}",
        trade_id or ts,
        Side(side),
        D(price),
        D(qty),
        D(fee),
        "USDT",
        Liquidity.TAKER,
        ts,
        True,
    )


def test_average_price_partial_close_and_flip():
    pos = Position("BTCUSDT")
    pos, _ = pos.apply_fill(fill("BUY", "1", "100", "0.1", 1))
    pos, _ = pos.apply_fill(fill("BUY", "1", "110", "0.11", 2))
    assert (pos.qty, pos.avg_price) == (D(2), D(105))
    pos, closed = pos.apply_fill(fill("SELL", "0.5", "120", "0.06", 3))
    assert closed is None
    assert (pos.qty, pos.avg_price, pos.realized_pnl) == (D("1.5"), D(105), D("7.5"))
    # sells 2 @ 90: closes 1.5 (-22.5), opens a 0.5 short at 90; its fee splits 3:1
    pos, closed = pos.apply_fill(fill("SELL", "2", "90", "0.18", 4))
    assert (pos.qty, pos.avg_price, pos.realized_pnl) == (D("-0.5"), D(90), D(-15))
    assert pos.fees == D("0.45")
    assert closed == ClosedTrade(
        symbol="BTCUSDT",
        direction=Side.BUY,
        opened_ms=1,
        closed_ms=4,
        quantity=D(2),
        entry_price=D(105),
        exit_price=D("97.5"),
        pnl=D("-15.405"),
        fees=D("0.405"),
        funding=D(0),
    )
    assert pos.unrealized_pnl(D(80)) == D(5)  # short 0.5 from 90 to 80
    pos, closed = pos.apply_fill(fill("BUY", "0.5", "80", "0.04", 5))
    assert pos.is_flat and pos.avg_price == 0
    assert closed is not None and closed.direction is Side.SELL
    assert closed.pnl == D(5) - D("0.045") - D("0.04")


def test_funding_belongs_to_the_open_round_trip():
    events = [
        fill("SELL", "2", "100", "0.1", 1),
        FundingPaid("BTCUSDT", D("0.5"), D("0.0001"), "USDT", 2),
        fill("BUY", "2", "80", "0.08", 3),
        FundingPaid("BTCUSDT", D(-1), D("0.0001"), "USDT", 4),  # flat: lifetime only
    ]
    positions, closed = fold_positions(events)
    [trade] = closed
    assert trade.pnl == D(40) - D("0.18") + D("0.5")
    assert trade.return_pct == float((D(40) - D("0.18") + D("0.5")) / D(200) * 100)
    assert positions["BTCUSDT"].funding == D("-0.5")
    assert positions["BTCUSDT"].realized_pnl == D(40)
