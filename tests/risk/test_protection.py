"""Protective orders: brackets summing to the position, trigger sides, break-even after the first
target, lost legs restored; all expected prices worked by hand."""

from __future__ import annotations

import json
from decimal import Decimal as D
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from risk_cases import spot, usdm

from engine.model import Market, Side
from engine.orders import (
    CancelOrder,
    Liquidity,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    OrderRole,
    OrderType,
    SubmitOrder,
    SubmitOrderList,
)
from risk.config import RiskConfig, TakeProfitLevel, TrailingConfig
from risk.filters import ExchangeFilters, parse_exchange_filters
from risk.protection import (
    FilledEntry,
    ProtectionPlan,
    ProtectionUpdate,
    apply_order_event,
    break_even_price,
    cancel_protection,
    oco_list_id,
    plan_protection,
)
from risk.quantize import OrderDraft, QuantizedOrder, quantize_order

CONFIG = RiskConfig()  # ladder 1R x 50 %, 2R x 50 %; break-even (+0.1 % a side) after target 1
TS = 1_700_000_000_000


def long_btc(qty: str = "0.013", distance: str = "300", side: Side = Side.BUY) -> FilledEntry:
    return FilledEntry("BTCUSDT", side, D(30000), D(qty), D(distance), "tl-BTCUSDT-7-en", 7)


def long_bnb(qty: str = "0.020") -> FilledEntry:
    return FilledEntry("BNBUSDT", Side.BUY, D(600), D(qty), D(6), "tl-BNBUSDT-3-en", 3)


def summary(commands: tuple) -> list[tuple]:
    out: list[tuple] = []
    for c in commands:
        if isinstance(c, CancelOrder):
            out.append(("cancel", c.client_order_id))
            continue
        if isinstance(c, SubmitOrderList):  # the list, then its legs
            out.append(("oco", c.list_client_order_id))
        for i in c.orders if isinstance(c, SubmitOrderList) else (c.intent,):
            price = i.stop_price if i.stop_price is not None else i.price
            out.append((i.client_order_id, i.type.value, i.side.value, str(i.quantity), str(price)))
    return out


def fill(
    plan_or_update: ProtectionPlan | ProtectionUpdate,
    coid: str,
    price: str,
    qty: str,
    filters: ExchangeFilters,
    last: str,
    config: RiskConfig = CONFIG,
) -> ProtectionUpdate:
    plan = plan_or_update.plan if isinstance(plan_or_update, ProtectionUpdate) else plan_or_update
    event = OrderFilled(
        plan.entry.symbol,
        coid,
        1,
        plan.exit_side,
        D(price),
        D(qty),
        D(0),
        "USDT",
        Liquidity.TAKER,
        TS,
        order_complete=True,
    )
    return apply_order_event(plan, event, config, filters, D(last), TS)


def test_futures_long_gets_two_brackets_summing_to_the_position() -> None:
    update = plan_protection(long_btc(), CONFIG, usdm(), D(30010), TS)
    assert summary(update.commands) == [
        ("tl-BTCUSDT-7-sl1", "STOP_MARKET", "SELL", "0.006", "29700.0"),
        ("tl-BTCUSDT-7-tp1", "TAKE_PROFIT_MARKET", "SELL", "0.006", "30300.0"),
        ("tl-BTCUSDT-7-sl2", "STOP_MARKET", "SELL", "0.007", "29700.0"),
        ("tl-BTCUSDT-7-tp2", "TAKE_PROFIT_MARKET", "SELL", "0.007", "30600.0"),
    ]
    intents = [c.intent for c in update.commands]
    assert all(i.reduce_only and i.parent_id == "tl-BTCUSDT-7-en" for i in intents)
    assert {i.role for i in intents} == {OrderRole.STOP_LOSS, OrderRole.TAKE_PROFIT}
    assert update.plan.oco_pairs() == (
        ("tl-BTCUSDT-7-sl1", "tl-BTCUSDT-7-tp1"),
        ("tl-BTCUSDT-7-sl2", "tl-BTCUSDT-7-tp2"),
    )


def test_short_mirrors_and_rounds_its_stop_toward_the_market() -> None:
    update = plan_protection(
        long_btc(distance="300.05", side=Side.SELL), CONFIG, usdm(), D(29990), TS
    )
    assert summary(update.commands) == [  # stop 30300.05 -> 30300.0 (BUY rounds down)
        ("tl-BTCUSDT-7-sl1", "STOP_MARKET", "BUY", "0.006", "30300.0"),
        ("tl-BTCUSDT-7-tp1", "TAKE_PROFIT_MARKET", "BUY", "0.006", "29699.9"),  # 29699.95 down
        ("tl-BTCUSDT-7-sl2", "STOP_MARKET", "BUY", "0.007", "30300.0"),
        ("tl-BTCUSDT-7-tp2", "TAKE_PROFIT_MARKET", "BUY", "0.007", "29399.9"),  # 29399.90
    ]


def test_a_level_too_small_for_the_filters_merges_into_the_next() -> None:
    # 0.006 BNB at the 594 stop is 3.56 USDT < NOTIONAL 5: one bracket carries all 0.012.
    update = plan_protection(long_bnb("0.012"), CONFIG, spot(), D(600), TS)
    assert summary(update.commands) == [
        ("oco", "tl-BNBUSDT-3-oc2"),
        ("tl-BNBUSDT-3-sl2", "STOP_MARKET", "SELL", "0.012", "594.00"),
        ("tl-BNBUSDT-3-tp2", "TAKE_PROFIT_MARKET", "SELL", "0.012", "612.00"),
    ]


def test_a_stop_already_crossed_exits_at_market_instead_of_resting() -> None:
    update = plan_protection(
        long_btc(), CONFIG, usdm(), D(29700), TS
    )  # last == stop: would trigger
    assert summary(update.commands) == [
        ("tl-BTCUSDT-7-ex1r1", "MARKET", "SELL", "0.006", "None"),
        ("tl-BTCUSDT-7-ex2r1", "MARKET", "SELL", "0.007", "None"),
    ]
    assert all(c.intent.reduce_only for c in update.commands)


def test_the_trigger_side_is_judged_on_the_quantised_stop() -> None:
    # stop 29699.95 rounds up to 29700.0, which a last price of 29700.0 would trigger at once
    update = plan_protection(long_btc(distance="300.05"), CONFIG, usdm(), D("29700.0"), TS)
    assert [c.intent.type for c in update.commands] == [OrderType.MARKET, OrderType.MARKET]


def test_a_target_already_reached_exits_that_level_at_market() -> None:
    update = plan_protection(long_btc(), CONFIG, usdm(), D(30300), TS)
    assert summary(update.commands) == [
        ("tl-BTCUSDT-7-ex1r1", "MARKET", "SELL", "0.006", "None"),
        ("tl-BTCUSDT-7-sl2", "STOP_MARKET", "SELL", "0.007", "29700.0"),
        ("tl-BTCUSDT-7-tp2", "TAKE_PROFIT_MARKET", "SELL", "0.007", "30600.0"),
    ]
    taken = fill(update, "tl-BTCUSDT-7-ex1r1", "30301", "0.006", usdm(), "30301")
    assert taken.target_hit and not taken.stopped_out


def test_break_even_price_covers_both_fees() -> None:
    # Net PnL of one unit, bought at 30000 and sold at x, paying 0.1 % on both legs, is zero.
    x = Fraction(break_even_price(Side.BUY, D(30000), D("0.1")))
    assert abs(x * Fraction("0.999") - 30000 * Fraction("1.001")) < Fraction(1, 10**25)
    y = Fraction(break_even_price(Side.SELL, D(30000), D("0.1")))  # sold at 30000, bought back at y
    assert abs(30000 * Fraction("0.999") - y * Fraction("1.001")) < Fraction(1, 10**25)
    assert 30060 < x < Fraction("30060.1") and Fraction("29940.05") < y < Fraction("29940.06")


def test_futures_first_target_moves_the_stop_to_break_even_new_stop_first() -> None:
    placed = plan_protection(long_btc(), CONFIG, usdm(), D(30010), TS)
    update = fill(placed, "tl-BTCUSDT-7-tp1", "30300", "0.006", usdm(), "30300")
    # break-even 30000 x 1.001 / 0.999 = 30060.06006..., a SELL stop rounds up: 30060.1
    assert summary(update.commands) == [
        ("cancel", "tl-BTCUSDT-7-sl1"),
        ("tl-BTCUSDT-7-sl2r1", "STOP_MARKET", "SELL", "0.007", "30060.1"),
        ("cancel", "tl-BTCUSDT-7-sl2"),
    ]
    assert update.target_hit
    # The cancels we asked for come back and change nothing.
    for coid in ("tl-BTCUSDT-7-sl1", "tl-BTCUSDT-7-sl2"):
        update = apply_order_event(
            update.plan, OrderCanceled("BTCUSDT", coid, TS), CONFIG, usdm(), D(30300), TS
        )
        assert update.commands == ()
    done = fill(update, "tl-BTCUSDT-7-tp2", "30600", "0.007", usdm(), "30600")
    assert summary(done.commands) == [("cancel", "tl-BTCUSDT-7-sl2r1")] and done.plan.closed


def test_spot_brackets_are_oco_lists_futures_brackets_separate_orders() -> None:
    placed = plan_protection(long_bnb(), CONFIG, spot(), D("600.5"), TS)
    # 0.020 BNB at 600 with the stop 6 away: two halves, targets at 1R = 606 and 2R = 612
    assert summary(placed.commands) == [
        ("oco", "tl-BNBUSDT-3-oc1"),
        ("tl-BNBUSDT-3-sl1", "STOP_MARKET", "SELL", "0.010", "594.00"),
        ("tl-BNBUSDT-3-tp1", "TAKE_PROFIT_MARKET", "SELL", "0.010", "606.00"),
        ("oco", "tl-BNBUSDT-3-oc2"),
        ("tl-BNBUSDT-3-sl2", "STOP_MARKET", "SELL", "0.010", "594.00"),
        ("tl-BNBUSDT-3-tp2", "TAKE_PROFIT_MARKET", "SELL", "0.010", "612.00"),
    ]
    assert all(isinstance(c, SubmitOrderList) for c in placed.commands)
    fut = plan_protection(long_btc(), CONFIG, usdm(), D(30010), TS)
    assert all(isinstance(c, SubmitOrder) for c in fut.commands)


def test_oco_list_ids_name_the_pair_and_fit_binance() -> None:
    assert oco_list_id("tl-BTCUSDT-42-sl1") == "tl-BTCUSDT-42-oc1"
    assert oco_list_id("tl-BTCUSDT-42-sl2r3") == "tl-BTCUSDT-42-oc2r3"
    longest = "abcdef-0a1b2c3d-123456789012-sl9r99"  # 35 chars: a crc-named symbol
    assert oco_list_id(longest) == "abcdef-0a1b2c3d-123456789012-oc9r99"


def test_spot_first_target_replaces_the_whole_pair_cancel_first() -> None:
    placed = plan_protection(long_bnb(), CONFIG, spot(), D("600.5"), TS)
    update = fill(placed, "tl-BNBUSDT-3-tp1", "606", "0.010", spot(), "606")
    # The venue expired sl1 with its list. Pair 2 goes with one cancel, then comes back at
    # break-even 600 x 1.001 / 0.999 = 601.2012..., rounded up to 601.21.
    assert summary(update.commands) == [
        ("cancel", "tl-BNBUSDT-3-sl2"),
        ("oco", "tl-BNBUSDT-3-oc2r1"),
        ("tl-BNBUSDT-3-sl2r1", "STOP_MARKET", "SELL", "0.010", "601.21"),
        ("tl-BNBUSDT-3-tp2r1", "TAKE_PROFIT_MARKET", "SELL", "0.010", "612.00"),
    ]
    # What the venue reports for the lists that ended changes nothing.
    for event in (
        OrderExpired("BNBUSDT", "tl-BNBUSDT-3-sl1", TS, "OCO_OTHER_LEG"),
        OrderCanceled("BNBUSDT", "tl-BNBUSDT-3-sl2", TS),
        OrderCanceled("BNBUSDT", "tl-BNBUSDT-3-tp2", TS),
    ):
        update = apply_order_event(update.plan, event, CONFIG, spot(), D(606), TS)
        assert update.commands == () and update.plan.problems == ()


def test_spot_stop_fill_leaves_the_other_leg_to_the_venue() -> None:
    placed = plan_protection(long_bnb(), CONFIG, spot(), D("600.5"), TS)
    stopped = fill(placed, "tl-BNBUSDT-3-sl1", "594", "0.010", spot(), "593.9")
    assert stopped.commands == () and stopped.stopped_out
    echo = apply_order_event(
        stopped.plan,
        OrderExpired("BNBUSDT", "tl-BNBUSDT-3-tp1", TS, "OCO_OTHER_LEG"),
        CONFIG,
        spot(),
        D("593.9"),
        TS,
    )
    assert echo.commands == () and echo.plan.problems == ()


def test_spot_old_pair_filling_during_a_move_cancels_its_replacement() -> None:
    placed = plan_protection(long_bnb(), CONFIG, spot(), D("600.5"), TS)
    moved = fill(placed, "tl-BNBUSDT-3-tp1", "606", "0.010", spot(), "606")
    # The old stop sl2 fills before the venue processed its cancel: the new pair must go.
    raced = fill(moved, "tl-BNBUSDT-3-sl2", "594", "0.010", spot(), "594")
    assert summary(raced.commands) == [("cancel", "tl-BNBUSDT-3-sl2r1")]
    assert raced.stopped_out and raced.plan.closed


def test_spot_pair_lost_by_either_leg_is_placed_again_without_cancels() -> None:
    placed = plan_protection(long_bnb(), CONFIG, spot(), D("600.5"), TS)
    lost = apply_order_event(
        placed.plan,
        OrderCanceled("BNBUSDT", "tl-BNBUSDT-3-tp1", TS, "by user"),  # took its stop along
        CONFIG,
        spot(),
        D("600.5"),
        TS,
    )
    assert summary(lost.commands) == [
        ("oco", "tl-BNBUSDT-3-oc1r1"),
        ("tl-BNBUSDT-3-sl1r1", "STOP_MARKET", "SELL", "0.010", "594.00"),
        ("tl-BNBUSDT-3-tp1r1", "TAKE_PROFIT_MARKET", "SELL", "0.010", "606.00"),
    ]
    echo = apply_order_event(
        lost.plan, OrderCanceled("BNBUSDT", "tl-BNBUSDT-3-sl1", TS), CONFIG, spot(), D(600), TS
    )
    assert echo.commands == ()


def test_spot_rejected_pair_exits_its_quantity_at_market_once() -> None:
    placed = plan_protection(long_bnb(), CONFIG, spot(), D("600.5"), TS)
    plan = placed.plan
    commands: list = []
    for coid in ("tl-BNBUSDT-3-sl1", "tl-BNBUSDT-3-tp1"):  # the venue rejects both legs
        reject = OrderRejected("BNBUSDT", coid, "OCO_PRICES", "-2010", TS)
        update = apply_order_event(plan, reject, CONFIG, spot(), D("600.5"), TS)
        plan, commands = update.plan, commands + list(update.commands)
    assert summary(tuple(commands)) == [("tl-BNBUSDT-3-ex1r1", "MARKET", "SELL", "0.010", "None")]


def test_spot_cancel_protection_sends_one_cancel_per_pair() -> None:
    placed = plan_protection(long_bnb(), CONFIG, spot(), D("600.5"), TS)
    update = cancel_protection(placed.plan, TS, "manual exit")
    assert summary(update.commands) == [
        ("cancel", "tl-BNBUSDT-3-sl1"),
        ("cancel", "tl-BNBUSDT-3-sl2"),
    ]


def test_price_back_below_break_even_when_the_target_fills_exits_the_rest() -> None:
    placed = plan_protection(long_btc(), CONFIG, usdm(), D(30010), TS)
    update = fill(placed, "tl-BTCUSDT-7-tp1", "30300", "0.006", usdm(), "30050")  # below 30060.1
    assert summary(update.commands) == [
        ("cancel", "tl-BTCUSDT-7-sl1"),
        ("tl-BTCUSDT-7-ex2r1", "MARKET", "SELL", "0.007", "None"),
        ("cancel", "tl-BTCUSDT-7-sl2"),
        ("cancel", "tl-BTCUSDT-7-tp2"),
    ]


def test_without_break_even_the_stop_stays() -> None:
    config = RiskConfig(trailing=TrailingConfig(break_even_after_first_target=False))
    placed = plan_protection(long_btc(), config, usdm(), D(30010), TS)
    update = fill(placed, "tl-BTCUSDT-7-tp1", "30300", "0.006", usdm(), "30300", config)
    assert summary(update.commands) == [("cancel", "tl-BTCUSDT-7-sl1")]


def test_ratchet_to_the_previous_target_after_the_second() -> None:
    ladder = (
        TakeProfitLevel(r_multiple=D(1), fraction=D("0.4")),
        TakeProfitLevel(r_multiple=D(2), fraction=D("0.3")),
        TakeProfitLevel(r_multiple=D(3), fraction=D("0.3")),
    )
    config = RiskConfig(take_profit=ladder, trailing=TrailingConfig(step_to_previous_target=True))
    placed = plan_protection(long_btc("0.010"), config, usdm(), D(30010), TS)
    assert [s[3] for s in summary(placed.commands)] == [
        "0.004",
        "0.004",
        "0.003",
        "0.003",
        "0.003",
        "0.003",
    ]
    first = fill(placed, "tl-BTCUSDT-7-tp1", "30300", "0.004", usdm(), "30300", config)
    second = fill(first, "tl-BTCUSDT-7-tp2", "30600", "0.003", usdm(), "30600", config)
    assert summary(second.commands) == [
        ("cancel", "tl-BTCUSDT-7-sl2r1"),
        ("tl-BTCUSDT-7-sl3r2", "STOP_MARKET", "SELL", "0.003", "30300.0"),
        ("cancel", "tl-BTCUSDT-7-sl3r1"),
    ]


def test_stop_fill_cancels_the_target_and_reports_a_stop_out() -> None:
    placed = plan_protection(long_btc(), CONFIG, usdm(), D(30010), TS)
    first = fill(placed, "tl-BTCUSDT-7-sl1", "29700", "0.006", usdm(), "29690")
    assert summary(first.commands) == [("cancel", "tl-BTCUSDT-7-tp1")] and first.stopped_out
    second = fill(first, "tl-BTCUSDT-7-sl2", "29700", "0.007", usdm(), "29690")
    assert second.stopped_out and second.plan.closed
    again = fill(second, "tl-BTCUSDT-7-sl2", "29700", "0.007", usdm(), "29690")  # duplicate event
    assert again.commands == () and not again.stopped_out


def test_a_stop_the_venue_dropped_is_put_back() -> None:
    placed = plan_protection(long_btc(), CONFIG, usdm(), D(30010), TS)
    gone = apply_order_event(
        placed.plan,
        OrderExpired("BTCUSDT", "tl-BTCUSDT-7-sl1", TS, "expired"),
        CONFIG,
        usdm(),
        D(30010),
        TS,
    )
    assert summary(gone.commands) == [
        ("cancel", "tl-BTCUSDT-7-tp1"),
        ("tl-BTCUSDT-7-sl1r1", "STOP_MARKET", "SELL", "0.006", "29700.0"),
        ("tl-BTCUSDT-7-tp1r1", "TAKE_PROFIT_MARKET", "SELL", "0.006", "30300.0"),
    ]


def test_a_rejected_stop_is_not_resent_the_quantity_exits_at_market() -> None:
    placed = plan_protection(long_btc(), CONFIG, usdm(), D(30010), TS)
    # Even with the price back above the stop: the same stop would meet the same answer.
    reject = OrderRejected(
        "BTCUSDT", "tl-BTCUSDT-7-sl1", "ORDER_WOULD_IMMEDIATELY_TRIGGER", "-2021", TS
    )
    update = apply_order_event(placed.plan, reject, CONFIG, usdm(), D(30010), TS)
    assert summary(update.commands) == [
        ("cancel", "tl-BTCUSDT-7-tp1"),
        ("tl-BTCUSDT-7-ex1r1", "MARKET", "SELL", "0.006", "None"),
    ]


def test_a_lost_target_is_reported_and_the_stop_stays() -> None:
    placed = plan_protection(long_btc(), CONFIG, usdm(), D(30010), TS)
    update = apply_order_event(
        placed.plan,
        OrderCanceled("BTCUSDT", "tl-BTCUSDT-7-tp1", TS, "by user"),
        CONFIG,
        usdm(),
        D(30010),
        TS,
    )
    assert update.commands == () and "target lost" in update.plan.problems[0]
    assert [o.client_order_id for o in update.plan.working_orders()][:1] == ["tl-BTCUSDT-7-sl1"]


def test_futures_runner_is_a_native_trailing_stop_spot_keeps_a_fixed_target() -> None:
    config = RiskConfig(trailing=TrailingConfig(callback_rate_pct=D(1)))
    fut = plan_protection(long_btc(), config, usdm(), D(30010), TS)
    runner = fut.commands[-1].intent
    assert (
        runner.client_order_id,
        runner.type,
        runner.stop_price,
        runner.callback_rate_pct,
        runner.role,
    ) == (
        "tl-BTCUSDT-7-ts2",
        OrderType.TRAILING_STOP_MARKET,
        D("30600.0"),
        D("1.0"),
        OrderRole.TRAILING_STOP,
    )
    spot_plan = plan_protection(long_bnb(), config, spot(), D("600.5"), TS)
    assert spot_plan.commands[-1].orders[1].type is OrderType.TAKE_PROFIT_MARKET


def test_cancel_protection_cancels_every_working_leg_once() -> None:
    placed = plan_protection(long_btc(), CONFIG, usdm(), D(30010), TS)
    update = cancel_protection(placed.plan, TS, "manual exit")
    assert [c.client_order_id for c in update.commands] == [
        "tl-BTCUSDT-7-sl1",
        "tl-BTCUSDT-7-tp1",
        "tl-BTCUSDT-7-sl2",
        "tl-BTCUSDT-7-tp2",
    ]
    assert update.plan.closed and update.plan.working_orders() == ()


# -- brackets always sum to the position, over real symbols ---------------------------------------

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "binance-rest"
REAL: list[ExchangeFilters] = []
for market, name in (
    (Market.SPOT, "spot_exchangeInfo_20211012.json"),
    (Market.USDM, "usdm_exchangeInfo_20210721.json"),
):
    if (DATA / name).is_file():
        REAL += [
            parse_exchange_filters(e, market)
            for e in json.loads((DATA / name).read_text())["symbols"]
        ]


@pytest.mark.skipif(not REAL, reason="shared exchangeInfo files absent")
@settings(max_examples=300, deadline=None)
@given(
    index=st.integers(0, 10**6),
    steps=st.integers(1, 10**6),
    fractions=st.lists(st.integers(1, 9), min_size=1, max_size=4),
    ticks=st.integers(10, 10**6),
)
def test_bracket_quantities_sum_exactly_to_the_position(
    index: int, steps: int, fractions: list[int], ticks: int
) -> None:
    filters = REAL[index % len(REAL)]
    tick = filters.price.tick_size
    avg = max(filters.price.min_price, tick) + tick * ticks
    step = filters.lot.step_size
    qty = filters.lot.min_qty + step * steps if step else D(steps)
    if filters.lot.max_qty and qty > filters.lot.max_qty:
        qty = filters.lot.max_qty
    total = sum(fractions)
    shares = [D(f) / D(total) for f in fractions]
    shares[-1] = D(1) - sum(shares[:-1], D(0))
    ladder = tuple(TakeProfitLevel(r_multiple=D(i + 1), fraction=s) for i, s in enumerate(shares))
    config = RiskConfig(take_profit=ladder)
    entry = FilledEntry(filters.symbol, Side.BUY, avg, qty, tick * 10, "tl-X-1-en", 1)
    update = plan_protection(entry, config, filters, avg, TS)
    assert sum((b.quantity for b in update.plan.brackets), D(0)) == qty
    locked = D(0)  # what the orders hold of the base asset on spot: an OCO list counts once
    for command in update.commands:
        assert isinstance(command, SubmitOrder | SubmitOrderList)
        if isinstance(command, SubmitOrderList):
            assert filters.market is Market.SPOT  # USDⓈ-M has no order lists
            legs = command.orders
        else:
            legs = (command.intent,)
        locked += legs[0].quantity
        for intent in legs:
            again = quantize_order(_draft_of(intent), filters, avg)
            assert isinstance(again, QuantizedOrder) and again.order.quantity == intent.quantity
    if filters.market is Market.SPOT:
        assert locked <= qty  # a bracket locks its quantity once at most: no balance rejects


def _draft_of(intent: OrderIntent) -> OrderDraft:
    return OrderDraft(
        intent.symbol,
        intent.side,
        intent.type,
        intent.quantity,
        intent.price,
        intent.stop_price,
        intent.callback_rate_pct,
        intent.reduce_only,
        intent.time_in_force,
        intent.role,
        intent.parent_id,
    )
