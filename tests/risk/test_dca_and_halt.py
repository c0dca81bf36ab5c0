"""DCA limits and re-planning; the orders sent when trading halts (with and without flattening)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from risk_cases import spot, usdm

from engine.model import Side
from engine.orders import CancelOrder, OrderRole, OrderType, SubmitOrder
from risk.checks import PositionView
from risk.config import DcaConfig, RiskConfig
from risk.dca import DcaState, after_add_filled, dca_add_quantity, replan_after_add
from risk.halt import HaltPlan, OpenOrderView, halt_commands
from risk.protection import FilledEntry, plan_protection

TS = 1_700_000_000_000
DCA = DcaConfig(enabled=True, max_adds=2, spacing_pct=D(2), size_multiplier=D("1.5"))


def test_an_add_is_due_only_after_the_spacing_and_within_max_adds() -> None:
    state = DcaState(Side.BUY, initial_quantity=D(1), last_fill_price=D(100))
    assert dca_add_quantity(state, DCA, D("98.01")) is None  # 1.99 % against
    assert dca_add_quantity(state, DCA, D(98)) == D("1.5")  # 2 %: add 1 = 1 x 1.5
    state = after_add_filled(state, D(98))
    assert dca_add_quantity(state, DCA, D("96.05")) is None  # spacing counts from the last fill
    assert dca_add_quantity(state, DCA, D("96.04")) == D("2.25")  # add 2 = 1 x 1.5^2
    state = after_add_filled(state, D("96.04"))
    assert dca_add_quantity(state, DCA, D(50)) is None  # max_adds reached


def test_short_adds_when_price_rises_and_nothing_when_disabled() -> None:
    short = DcaState(Side.SELL, initial_quantity=D(2), last_fill_price=D(100))
    assert dca_add_quantity(short, DCA, D(102)) == D(3)
    assert dca_add_quantity(short, DCA, D(98)) is None
    assert dca_add_quantity(short, DcaConfig(), D(150)) is None  # DCA is off by default


def test_after_an_add_the_stop_stays_and_the_targets_follow_the_new_average() -> None:
    config = RiskConfig(dca=DCA)
    entry = FilledEntry("BTCUSDT", Side.BUY, D(30000), D("0.010"), D(300), "tl-BTCUSDT-7-en", 7)
    placed = plan_protection(entry, config, usdm(), D(30000), TS)
    # add 0.010 at 29850: average 29925, stop still 29700, distance 225, targets 30150 and 30375
    update = replan_after_add(placed.plan, D("0.010"), D(29850), config, usdm(), D(29850), TS)
    got = [
        (c.client_order_id,)
        if isinstance(c, CancelOrder)
        else (c.intent.client_order_id, str(c.intent.quantity), str(c.intent.stop_price))
        for c in update.commands
    ]
    assert got == [
        ("tl-BTCUSDT-7-sl1",),
        ("tl-BTCUSDT-7-tp1",),
        ("tl-BTCUSDT-7-sl2",),
        ("tl-BTCUSDT-7-tp2",),
        ("tl-BTCUSDT-7-sl1r1", "0.010", "29700.0"),
        ("tl-BTCUSDT-7-tp1r1", "0.010", "30150.0"),
        ("tl-BTCUSDT-7-sl2r1", "0.010", "29700.0"),
        ("tl-BTCUSDT-7-tp2r1", "0.010", "30375.0"),
    ]
    assert update.plan.entry.quantity == D("0.020") and update.plan.entry.avg_price == D(29925)


def test_an_add_beyond_the_stop_is_refused() -> None:
    entry = FilledEntry("BTCUSDT", Side.BUY, D(30000), D("0.010"), D(300), "tl-BTCUSDT-7-en", 7)
    placed = plan_protection(entry, RiskConfig(), usdm(), D(30000), TS)
    with pytest.raises(ValueError):
        replan_after_add(placed.plan, D("0.010"), D(29400), RiskConfig(), usdm(), D(29400), TS)


# -- halt ----------------------------------------------------------------------------------------

ORDERS = [
    OpenOrderView("ETHUSDT", "tl-ETHUSDT-9-en", OrderRole.ENTRY),
    OpenOrderView("BTCUSDT", "tl-BTCUSDT-7-dc1", OrderRole.DCA),
    OpenOrderView("BTCUSDT", "tl-BTCUSDT-7-sl1", OrderRole.STOP_LOSS),
    OpenOrderView("BTCUSDT", "tl-BTCUSDT-7-tp1", OrderRole.TAKE_PROFIT),
]
POSITIONS = [PositionView("BTCUSDT", Side.BUY, D("0.013"), D(30000))]
FILTERS = {"BTCUSDT": usdm(), "BNBUSDT": spot()}


def halt(flatten: bool, orders: list = ORDERS, positions: list = POSITIONS) -> HaltPlan:
    return halt_commands(
        open_orders=orders,
        positions=positions,
        filters=FILTERS,
        reference_prices={"BTCUSDT": D(30000), "BNBUSDT": D(600)},
        flatten=flatten,
        prefix="tl",
        next_seq=50,
        ts_ms=TS,
    )


def test_halt_cancels_entries_and_keeps_protection() -> None:
    plan = halt(flatten=False)
    assert [c.client_order_id for c in plan.commands] == ["tl-ETHUSDT-9-en", "tl-BTCUSDT-7-dc1"]
    assert all(isinstance(c, CancelOrder) for c in plan.commands) and plan.seq_used == 0


def test_halt_with_flatten_cancels_everything_then_exits_at_market() -> None:
    plan = halt(flatten=True)
    cancels = [c.client_order_id for c in plan.commands if isinstance(c, CancelOrder)]
    assert cancels == [
        "tl-ETHUSDT-9-en",
        "tl-BTCUSDT-7-dc1",
        "tl-BTCUSDT-7-sl1",
        "tl-BTCUSDT-7-tp1",
    ]
    (exit_order,) = [c.intent for c in plan.commands if isinstance(c, SubmitOrder)]
    assert isinstance(plan.commands[-1], SubmitOrder)  # cancels first: spot balances are locked
    assert (exit_order.client_order_id, exit_order.type, exit_order.side, exit_order.quantity) == (
        "tl-BTCUSDT-50-fl",
        OrderType.MARKET,
        Side.SELL,
        D("0.013"),
    )
    assert exit_order.reduce_only and exit_order.role is OrderRole.FLATTEN and plan.seq_used == 1


def test_flatten_splits_above_the_market_lot_max_and_skips_symbols_already_exiting() -> None:
    big = [PositionView("BTCUSDT", Side.SELL, D(250), D(30000))]  # MARKET_LOT_SIZE max 120
    plan = halt(flatten=True, orders=[], positions=big)
    assert [(c.intent.side, c.intent.quantity) for c in plan.commands] == [
        (Side.BUY, D(120)),
        (Side.BUY, D(120)),
        (Side.BUY, D(10)),
    ]
    exiting = [OpenOrderView("BTCUSDT", "tl-BTCUSDT-8-ex", OrderRole.EXIT)]
    assert halt(flatten=True, orders=exiting, positions=big).commands == ()


def test_dust_that_no_order_can_close_is_reported() -> None:
    dust = [PositionView("BNBUSDT", Side.BUY, D("0.0005"), D(600))]  # below minQty 0.001
    plan = halt(flatten=True, orders=[], positions=dust)
    assert plan.commands == () and "LOT_SIZE" in plan.problems[0]
