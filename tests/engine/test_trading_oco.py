"""Spot protective orders go out as OCO lists: a backtest of the real spot tape places every
stop and target of a two-level ladder without a single INSUFFICIENT_BALANCE reject.

Before order lists, each level's stop and target both locked the level's coins, so the second
level's legs were refused. Here a scripted strategy (a fake: it goes long every 20 s when flat,
stop 3 bp away) drives the real App: pipeline, risk gate, simulated venue, portfolio, journal.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from pathlib import Path

from engine.app import App
from engine.backtest import run_backtest
from engine.config import parse_config
from engine.journal import Journal
from engine.orders import OrderRole, OrderStatus
from strategy.signals import EnterRequest, PositionSide, RowClosed, StrategyContext


class LongEvery:
    """Strategy fake: a long entry every `every_s` seconds of closed rows while flat."""

    name = "long-every"

    def __init__(self, every_s: int = 20, stop_bp: str = "3") -> None:
        self.every_s = every_s
        self.stop_fraction = Decimal(stop_bp) / 10_000

    def on_event(self, event: object, ctx: StrategyContext) -> list:
        if not isinstance(event, RowClosed) or ctx.position(event.symbol) is not None:
            return []
        if (event.ts_ms // 1000) % self.every_s:
            return []
        price = Decimal(repr(float(ctx.rows[event.symbol].last("close"))))
        return [
            EnterRequest(
                symbol=event.symbol,
                side=PositionSide.LONG,
                strength=1.0,
                reference_price=price,
                equity_fraction=0.1,
                stop_distance=price * self.stop_fraction,
                take_profits=(),
                trailing_stop_pct=None,
                reason="scripted",
                confidence=0.9,
                threshold=0.5,
                contributions=(("scripted", 0.9),),
                ts_ms=event.ts_ms,
            )
        ]


def scripted(app: App) -> None:
    assert app.trading is not None
    app.trading.strategy = LongEvery()


def backtest_config(extra: dict | None = None):  # type: ignore[no-untyped-def]
    raw = {"logging": {"console": "off", "file": None}, **(extra or {})}
    return parse_config(raw)


def test_spot_backtest_places_every_protective_order_as_oco_lists(
    tapes: dict[str, Path], tmp_path: Path
) -> None:
    journal_path = tmp_path / "oco.sqlite"
    config = backtest_config({"risk": {"cooldown_after_stop_s": 0}})
    app, result = run_backtest(tapes["spot_btcusdt"], config, journal_path, on_app=scripted)
    journal = Journal.open(journal_path)
    try:
        intents = journal.intents()
        fills = journal.fills()
        events = {
            r.intent.client_order_id: journal.order_events(r.intent.client_order_id)
            for r in intents
        }
    finally:
        journal.close()
    roles = Counter(r.intent.role for r in intents)
    entries = [r for r in intents if r.intent.role is OrderRole.ENTRY and r.filled_qty > 0]
    assert len(entries) >= 3, (roles, app.trading.stats)  # type: ignore[union-attr]
    rejected = [
        (r.intent.client_order_id, r.reason) for r in intents if r.status is OrderStatus.REJECTED
    ]
    assert rejected == []  # above all no INSUFFICIENT_BALANCE
    stops = [r for r in intents if r.intent.role is OrderRole.STOP_LOSS]
    targets = {
        r.intent.client_order_id: r for r in intents if r.intent.role is OrderRole.TAKE_PROFIT
    }
    assert len(stops) >= 2 * len(entries) - 1  # two levels per entry (the last may be unplaced)
    for stop in stops:
        # every stop has its target: same level, parent, quantity; both accepted by the venue
        partner = targets[stop.intent.client_order_id.replace("-sl", "-tp")]
        assert (partner.intent.parent_id, partner.intent.quantity) == (
            stop.intent.parent_id,
            stop.intent.quantity,
        )
        assert events[stop.intent.client_order_id][0][0] == "OrderAccepted"
        assert events[partner.intent.client_order_id][0][0] == "OrderAccepted"
        # one leg of each finished pair filled and the other expired with it, or both cancelled
        outcome = {stop.status, partner.status}
        assert outcome in (
            {OrderStatus.FILLED, OrderStatus.EXPIRED},
            {OrderStatus.CANCELED},
            {OrderStatus.NEW},
        ), (stop, partner)
    for entry in entries:  # each entry's levels lock exactly what it bought, once
        levels = [s for s in stops if s.intent.parent_id == entry.intent.client_order_id]
        first_revision = [s for s in levels if "r" not in s.intent.client_order_id.split("-")[-1]]
        assert sum(s.intent.quantity for s in first_revision) == entry.filled_qty
    assert any(s.status is OrderStatus.FILLED for s in stops) or any(
        t.status is OrderStatus.FILLED for t in targets.values()
    )
    assert result.fills == len(fills)
