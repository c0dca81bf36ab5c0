"""Notices from the trading loop: a backtest of the real spot tape tells every filled order,
every state change and the UTC day that ended, consistently with what the journal recorded;
scores crossing their threshold, halts and failing listeners on hand-made inputs.

The expected notices are rebuilt from the journal alone (fills grouped by order, a position
fold written here), never from the loop's own notices.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal as D
from pathlib import Path

from test_trading_oco import LongEvery, backtest_config
from test_trading_risk import T0, Harness

from engine.app import App
from engine.backtest import run_backtest
from engine.journal import Journal
from engine.notices import (
    DailySummaryNotice,
    ErrorNotice,
    Notice,
    SignalNotice,
    StateNotice,
    TradeNotice,
)
from engine.orders import OrderRole
from strategy.signals import ScoreUpdated

KINDS = {
    OrderRole.ENTRY: "entry",
    OrderRole.EXIT: "exit",
    OrderRole.STOP_LOSS: "stop_loss",
    OrderRole.TAKE_PROFIT: "take_profit",
    OrderRole.FLATTEN: "flatten",
}
MIDNIGHT = 1_723_161_600_000  # 2024-08-09 00:00 UTC: the tape crosses it


def test_a_backtest_tells_every_filled_order_state_change_and_day(
    tapes: dict[str, Path], tmp_path: Path
) -> None:
    notices: list[Notice] = []

    def attach(app: App) -> None:
        assert app.trading is not None
        app.trading.strategy = LongEvery()
        app.trading.notice_listeners.append(notices.append)

    # A tight daily loss limit makes the state change (REDUCING), and midnight clears it.
    config = backtest_config({"risk": {"cooldown_after_stop_s": 0, "daily_loss_limit_pct": 0.2}})
    run_backtest(tapes["spot_btcusdt"], config, tmp_path / "j.sqlite", on_app=attach)
    journal = Journal.open(tmp_path / "j.sqlite")
    try:
        intents = {r.intent.client_order_id: r.intent for r in journal.intents()}
        fills = journal.fills()
    finally:
        journal.close()

    # Orders that filled, from the journal: quantity, VWAP, last fill, and the PnL each exit
    # realised (a long-only position fold: average entry price, realised on every sell).
    orders: dict[str, list] = defaultdict(list)
    position, avg = D(0), D(0)
    realized: dict[str, D] = defaultdict(D)
    trips: list[tuple[int, D]] = []  # (closed at, net pnl) of each flat-to-flat round trip
    trip = D(0)
    for fill in fills:
        orders[fill.client_order_id].append(fill)
        if fill.side.value == "BUY":
            avg = (avg * position + fill.price * fill.quantity) / (position + fill.quantity)
            position += fill.quantity
        else:
            gain = (fill.price - avg) * fill.quantity
            realized[fill.client_order_id] += gain
            trip += gain
            position -= fill.quantity
        trip -= fill.fee
        if position == 0:
            trips.append((fill.ts_event_ms, trip))
            trip = D(0)
    expected = []
    for coid, its_fills in orders.items():
        qty = sum((f.quantity for f in its_fills), D(0))
        vwap = sum((f.price * f.quantity for f in its_fills), D(0)) / qty
        fees = sum((f.fee for f in its_fills), D(0))
        intent = intents[coid]
        pnl = None if intent.role is OrderRole.ENTRY else realized[coid] - fees
        expected.append(
            (its_fills[-1].ts_event_ms, KINDS[intent.role], intent.side.value, vwap, qty, pnl)
        )
    trades = [n for n in notices if isinstance(n, TradeNotice)]
    told = [(n.ts_ms, n.kind, n.side, n.price, n.quantity, n.realized_pnl) for n in trades]
    assert len(told) == len(expected) >= 10
    for got, want in zip(sorted(told, key=str), sorted(expected, key=str), strict=True):
        assert got[:5] == want[:5]
        assert (got[5] is None) == (want[5] is None)
        if want[5] is not None:
            assert abs(got[5] - want[5]) < D("1e-12")  # the loop's average has 28 digits
    # Entries say why: the request's score, threshold, contributions; the first legs placed.
    for notice in (n for n in trades if n.kind == "entry"):
        assert (notice.score, notice.threshold, notice.contributions) == (
            0.9,
            0.5,
            (("scripted", 0.9),),
        )
        entry = next(c for c, i in intents.items() if i.role is OrderRole.ENTRY
                     and orders[c][-1].ts_event_ms == notice.ts_ms)  # fmt: skip
        legs = [i for i in intents.values() if i.parent_id == entry]
        assert notice.stop_price == legs[0].stop_price  # sl1: the first leg journaled
        assert notice.target_price == legs[1].stop_price  # tp1
    # State changes: one notice per transition, with its trigger.
    states = [n for n in notices if isinstance(n, StateNotice)]
    assert [(n.from_state, n.to_state) for n in states] == [
        ("ACTIVE", "REDUCING"),
        ("REDUCING", "ACTIVE"),
    ]
    assert states[0].reason.startswith("DAILY_LOSS") and states[1].ts_ms >= MIDNIGHT
    # The day that ended: its round trips and equity, rebuilt from the fills (flat at midnight).
    (daily,) = [n for n in notices if isinstance(n, DailySummaryNotice)]
    day_trips = [pnl for closed, pnl in trips if closed < MIDNIGHT]
    assert len(day_trips) >= 3
    assert all(f.ts_event_ms < MIDNIGHT or f.ts_event_ms >= daily.ts_ms for f in fills)
    assert (daily.day, daily.trades, daily.wins) == (
        "2024-08-08",
        len(day_trips),
        sum(1 for p in day_trips if p > 0),
    )
    assert daily.pnl == sum(day_trips, D(0)) and daily.equity == 10_000 + daily.pnl
    assert daily.pnl_pct == float(daily.pnl / 100)
    assert not any(isinstance(n, ErrorNotice | SignalNotice) for n in notices)


def test_a_score_reaching_its_threshold_is_told_once_per_crossing() -> None:
    h = Harness()
    h.market(T0, "100")
    notices: list[Notice] = []
    h.loop.notice_listeners.append(notices.append)
    contributions = (("rsi", 0.01), ("obi", -0.3), ("vol", 0.2))
    for n, confidence in enumerate((0.4, 0.6, 0.7, 0.3, 0.55)):
        h.loop.on_score(ScoreUpdated("BTCUSDT", confidence, 0.5, contributions, T0 + n * 1000))
    signals = [n for n in notices if isinstance(n, SignalNotice)]
    assert [(s.ts_ms, s.score, s.threshold, s.price) for s in signals] == [
        (T0 + 2000, 0.6, 0.5, 100.0),  # decided a second after the scored vector
        (T0 + 5000, 0.55, 0.5, 100.0),
    ]
    assert signals[0].contributions == (("obi", -0.3), ("vol", 0.2), ("rsi", 0.01))
    # a fall model's confidence counts toward the short side
    h.loop.on_score(ScoreUpdated("BTCUSDT", 0.1, 0.5, (), T0 + 6000, 0.8, 0.6, -0.7))
    assert [(s.score, s.threshold) for s in notices if isinstance(s, SignalNotice)][-1] == (
        -0.8,
        0.6,
    )


def test_a_halt_is_told_as_a_state_change_and_an_error_for_a_person() -> None:
    h = Harness()
    h.market(T0, "100")
    notices: list[Notice] = []

    def broken(notice: Notice) -> None:
        raise RuntimeError("notifier down")

    h.loop.notice_listeners.extend([broken, notices.append])  # the broken one never stops us
    h.loop.halt("operator", T0 + 1000)
    assert notices == [
        StateNotice(T0 + 1000, "ACTIVE", "HALTED", "MANUAL_HALT: manual halt: operator"),
        ErrorNotice(
            T0 + 1000,
            "risk",
            "trading halted (MANUAL_HALT: manual halt: operator); entries stay refused until a "
            "manual resume",
            needs_person=True,
        ),
    ]
