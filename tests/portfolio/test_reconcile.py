"""Reconciliation mismatches and the order-state fold."""

from __future__ import annotations

from decimal import Decimal as D

from engine.model import Side
from engine.orders import (
    Liquidity,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderIntent,
    OrderStatus,
    OrderType,
)
from portfolio.orders import OrderTracker
from portfolio.reconcile import (
    BalanceMismatch,
    OrderFillMismatch,
    OrderMissingOnVenue,
    PositionMismatch,
    UnknownOrderOnVenue,
    reconcile,
)


def test_every_kind_of_mismatch_in_a_stable_order():
    out = reconcile(
        local_orders={"a": ("BTCUSDT", D(0)), "b": ("BTCUSDT", D("0.5")), "c": ("ETHUSDT", D(0))},
        venue_orders={"b": ("BTCUSDT", D("0.7")), "c": ("ETHUSDT", D(0)), "z": ("ETHUSDT", D(0))},
        local_positions={"BTCUSDT": D(1), "ETHUSDT": D(0)},
        venue_positions={"BTCUSDT": D(1), "SOLUSDT": D(-3)},
        local_balances={"USDT": D("100.00000001"), "BTC": D(1)},
        venue_balances={"USDT": D(100), "BTC": D("0.9")},
        balance_tolerance=D("0.00000001"),
    )
    assert out == [
        OrderMissingOnVenue("BTCUSDT", "a"),
        UnknownOrderOnVenue("ETHUSDT", "z"),
        OrderFillMismatch("BTCUSDT", "b", D("0.5"), D("0.7")),
        PositionMismatch("SOLUSDT", D(0), D(-3)),
        BalanceMismatch("BTC", D(1), D("0.9")),
    ]


def test_identical_views_match():
    view = {"x": ("BTCUSDT", D(1))}
    assert (
        reconcile(
            local_orders=view,
            venue_orders=view,
            local_positions={},
            venue_positions={"BTCUSDT": D(0)},
            local_balances={"USDT": D(5)},
            venue_balances={"USDT": D(5)},
        )
        == []
    )


def test_order_tracker_folds_events_and_ignores_duplicate_fills():
    tracker = OrderTracker()
    intent = OrderIntent("o1", "BTCUSDT", Side.BUY, OrderType.LIMIT, D(2), price=D(100))
    tracker.submitted(intent)
    assert tracker.open_orders()["o1"].status is OrderStatus.PENDING
    tracker.apply(OrderAccepted("BTCUSDT", "o1", "9", 1))
    part = OrderFilled(
        "BTCUSDT", "o1", 5, Side.BUY, D(100), D(1), D(0), "USDT", Liquidity.MAKER, 2, False
    )
    tracker.apply(part)
    tracker.apply(part)
    state = tracker.get("o1")
    assert (
        state is not None and state.filled == D(1) and state.status is OrderStatus.PARTIALLY_FILLED
    )
    assert state.venue_order_id == "9"
    tracker.apply(OrderCanceled("BTCUSDT", "o1", 3, "user"))
    tracker.apply(OrderAccepted("BTCUSDT", "o1", "9", 4))  # late event: terminal states stay
    assert tracker.get("o1").status is OrderStatus.CANCELED and tracker.open_orders() == {}
    assert tracker.apply(OrderAccepted("BTCUSDT", "other", "1", 5)) is None
