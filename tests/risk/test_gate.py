"""RiskGate end to end: request -> checks -> sizing -> quantisation -> order; fills -> stops."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

from risk_cases import spot, usdm

from engine.model import Side
from engine.orders import (
    CancelOrder,
    Liquidity,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    OrderRole,
    OrderType,
    SubmitOrder,
)
from risk.checks import AccountView, DenialReason, Denied, MarketView, PositionView
from risk.config import DcaConfig, RiskConfig
from risk.gate import Approved, EntryRequest, RiskGate
from risk.halt import OpenOrderView
from risk.state import EquityObserved, HaltRequested, TradingState

NOW = 1_700_000_000_000
FILTERS = {"BTCUSDT": usdm(), "BNBUSDT": spot()}


def account(**changes: object) -> AccountView:
    base = AccountView(equity=D(10000), day_start_equity=D(10000))
    return replace(base, **changes)  # type: ignore[arg-type]


def market(symbol: str = "BTCUSDT", now: int = NOW) -> MarketView:
    return MarketView(symbol, book_valid=True, last_book_update_ms=now - 100, model_warm=True)


def request(
    symbol: str = "BTCUSDT",
    side: Side = Side.BUY,
    strength: str = "1",
    stop: str = "300",
    ref: str = "30000",
    ts: int = NOW,
) -> EntryRequest:
    return EntryRequest(symbol, side, D(strength), D(stop), D(ref), ts)


def filled(
    coid: str,
    qty: str,
    price: str,
    side: Side = Side.BUY,
    complete: bool = True,
    symbol: str = "BTCUSDT",
    ts: int = NOW,
    trade: int = 1,
) -> OrderFilled:
    return OrderFilled(
        symbol, coid, trade, side, D(price), D(qty), D(0), "USDT", Liquidity.TAKER, ts, complete
    )


def ids(commands: tuple) -> list[str]:
    return [
        ("cancel " if isinstance(c, CancelOrder) else "")
        + (c.client_order_id if isinstance(c, CancelOrder) else c.intent.client_order_id)
        for c in commands
    ]


def test_entry_is_sized_capped_and_quantised() -> None:
    gate = RiskGate(RiskConfig(), FILTERS)
    # risk 100 / stop 300 = 0.333 BTC; cap 20 % x 10000 / 30000 = 0.0666 -> 0.066 on the step
    decision = gate.request_entry(request(), account(), market())
    assert isinstance(decision, Approved) and decision.sizing is not None and decision.sizing.capped
    (command,) = decision.commands
    assert isinstance(command, SubmitOrder)
    i = command.intent
    assert (i.client_order_id, i.type, i.side, i.quantity, i.role) == (
        "tl-BTCUSDT-1-en",
        OrderType.MARKET,
        Side.BUY,
        D("0.066"),
        OrderRole.ENTRY,
    )
    assert gate.next_seq == 2


def test_uncapped_entry_uses_the_risk_budget_and_strength() -> None:
    gate = RiskGate(RiskConfig(), FILTERS)
    # 100 / 3000 = 0.0333 x strength 0.5 = 0.01666 -> 0.016
    decision = gate.request_entry(request(stop="3000", strength="0.5"), account(), market())
    assert (
        isinstance(decision, Approved)
        and decision.intent is not None
        and decision.intent.quantity == D("0.016")
    )


def test_limit_entries_rest_at_the_passive_price() -> None:
    gate = RiskGate(RiskConfig(entry_order_type="LIMIT"), FILTERS)
    req = EntryRequest("BTCUSDT", Side.BUY, D(1), D(3000), D(30000), NOW, limit_price=D("29999.97"))
    decision = gate.request_entry(req, account(), market())
    assert isinstance(decision, Approved) and decision.intent is not None
    assert (decision.intent.type, decision.intent.price) == (OrderType.LIMIT, D("29999.9"))


def test_a_size_above_the_lot_maximum_is_shrunk_not_refused() -> None:
    gate = RiskGate(RiskConfig(), FILTERS)
    rich = account(equity=D(10**8), day_start_equity=D(10**8))  # cap 20e6 / 30000 = 666 BTC
    decision = gate.request_entry(request(), rich, market())
    assert isinstance(decision, Approved) and decision.intent.quantity == D(
        120
    )  # MARKET_LOT_SIZE max


def test_a_size_above_the_max_notional_is_shrunk() -> None:
    filters = spot()
    (notional,) = filters.notionals
    tight = replace(filters, notionals=(replace(notional, max_notional=D(1000)),))
    gate = RiskGate(RiskConfig(entry_order_type="LIMIT"), {"BNBUSDT": tight})
    req = EntryRequest("BNBUSDT", Side.BUY, D(1), D(20), D(600), NOW, limit_price=D(600))
    # risk 100 / 20 = 5 BNB, cap 2000 / 600 = 3.333 (2000 USDT); max notional 1000 / 600 -> 1.666
    decision = gate.request_entry(req, account(), market("BNBUSDT"))
    assert isinstance(decision, Approved) and decision.intent.quantity == D("1.666")
    # applyMaxToMarket is false here: a MARKET entry is not held to the max notional
    market_gate = RiskGate(RiskConfig(), {"BNBUSDT": tight})
    req = EntryRequest("BNBUSDT", Side.BUY, D(1), D(20), D(600), NOW)
    decision = market_gate.request_entry(req, account(), market("BNBUSDT"))
    assert isinstance(decision, Approved) and decision.intent.quantity == D("3.333")


def test_a_working_entry_counts_as_a_position_before_the_account_knows_it() -> None:
    gate = RiskGate(RiskConfig(max_open_positions=2), FILTERS)
    assert isinstance(gate.request_entry(request(), account(), market()), Approved)
    twice = gate.request_entry(request(ts=NOW + 1), account(), market())
    assert isinstance(twice, Denied) and twice.reason is DenialReason.POSITION_EXISTS
    bnb = gate.request_entry(request("BNBUSDT", ref="600", stop="6"), account(), market("BNBUSDT"))
    assert isinstance(bnb, Approved)
    eth_market = MarketView("ETHUSDT", book_valid=True, last_book_update_ms=NOW, model_warm=True)
    third = RiskGate(
        RiskConfig(max_open_positions=2), {**FILTERS, "ETHUSDT": replace(usdm(), symbol="ETHUSDT")}
    )
    third.request_entry(request(), account(), market())
    third.request_entry(request("BNBUSDT", ref="600", stop="6"), account(), market("BNBUSDT"))
    full = third.request_entry(request("ETHUSDT", ref="2000", stop="20"), account(), eth_market)
    assert isinstance(full, Denied) and full.reason is DenialReason.MAX_OPEN_POSITIONS


def test_a_stop_distance_beyond_the_price_is_an_invalid_request() -> None:
    gate = RiskGate(RiskConfig(), FILTERS)
    for stop in ("0", "30000"):
        decision = gate.request_entry(request(stop=stop), account(), market())
        assert isinstance(decision, Denied) and decision.reason is DenialReason.INVALID_REQUEST


def test_a_symbol_not_trading_on_the_exchange_is_denied() -> None:
    gate = RiskGate(RiskConfig(), {"BTCUSDT": replace(usdm(), status="BREAK")})
    decision = gate.request_entry(request(), account(), market())
    assert isinstance(decision, Denied) and decision.reason is DenialReason.SYMBOL_NOT_TRADING


def test_an_exit_also_cancels_working_entries_of_the_symbol() -> None:
    gate = RiskGate(RiskConfig(entry_order_type="LIMIT"), FILTERS)
    req = EntryRequest("BTCUSDT", Side.BUY, D(1), D(300), D(30000), NOW, limit_price=D(29000))
    gate.request_entry(req, account(), market())
    gate.on_order_event(filled("tl-BTCUSDT-1-en", "0.010", "29000", complete=False), D(29000), NOW)
    out = gate.request_exit(PositionView("BTCUSDT", Side.BUY, D("0.010"), D(29000)), D(29000), NOW)
    assert ids(out.commands) == ["tl-BTCUSDT-2-ex", "cancel tl-BTCUSDT-1-en"]


def test_a_protected_position_counts_before_the_account_view_shows_it() -> None:
    gate = RiskGate(RiskConfig(), FILTERS)
    gate.request_entry(request(), account(), market())
    gate.on_order_event(filled("tl-BTCUSDT-1-en", "0.066", "30000"), D(30000), NOW)
    again = gate.request_entry(request(side=Side.SELL, ts=NOW + 1), account(), market())
    assert isinstance(again, Denied) and again.reason is DenialReason.OPPOSITE_POSITION


def test_denials_pass_through_and_consume_no_sequence_number() -> None:
    gate = RiskGate(RiskConfig(), FILTERS)
    gate.observe(HaltRequested(NOW))
    decision = gate.request_entry(request(), account(), market())
    assert isinstance(decision, Denied) and decision.reason is DenialReason.TRADING_HALTED
    assert gate.next_seq == 1
    spot_short = RiskGate(RiskConfig(), FILTERS).request_entry(
        request("BNBUSDT", Side.SELL, ref="600", stop="6"), account(), market("BNBUSDT")
    )
    assert isinstance(spot_short, Denied) and spot_short.reason is DenialReason.SHORT_NOT_SUPPORTED


def test_a_size_below_the_filters_is_a_filter_denial() -> None:
    gate = RiskGate(RiskConfig(), FILTERS)
    # equity 100: cap 20 / 30000 = 0.00066 BTC -> 0 on the 0.001 step
    decision = gate.request_entry(
        request(), account(equity=D(100), day_start_equity=D(100)), market()
    )
    assert isinstance(decision, Denied) and decision.reason is DenialReason.FILTER_REJECT
    assert "LOT_SIZE" in decision.detail


def test_exchange_order_count_limit_is_a_filter_denial() -> None:
    gate = RiskGate(RiskConfig(), FILTERS)
    decision = gate.request_entry(request(), account(open_orders={"BTCUSDT": 200}), market())
    assert isinstance(decision, Denied) and "MAX_NUM_ORDERS" in decision.detail


def test_a_venue_filter_reject_is_never_retried_unchanged() -> None:
    gate = RiskGate(RiskConfig(), FILTERS)
    first = gate.request_entry(request(), account(), market())
    assert isinstance(first, Approved) and first.intent is not None
    gate.on_order_event(
        OrderRejected(
            "BTCUSDT", first.intent.client_order_id, "LOT_SIZE", "Filter failure: LOT_SIZE", NOW
        ),
        D(30000),
        NOW,
    )
    again = gate.request_entry(request(ts=NOW + 1000), account(), market())
    assert isinstance(again, Denied) and again.reason is DenialReason.FILTER_REJECT
    assert "venue rejected" in again.detail
    different = gate.request_entry(
        request(stop="3000", ts=NOW + 2000), account(), market()
    )  # 0.033: not the same
    assert isinstance(different, Approved)
    gate.on_order_event(
        OrderRejected(
            "BTCUSDT",
            different.intent.client_order_id,
            "INSUFFICIENT_BALANCE",
            "Account has insufficient balance",
            NOW,
        ),
        D(30000),
        NOW,
    )
    retry = gate.request_entry(request(stop="3000", ts=NOW + 3000), account(), market())
    assert isinstance(retry, Approved)  # not a filter reject: nothing remembered
    gate.on_order_event(
        OrderRejected("BTCUSDT", retry.intent.client_order_id, "X", "", NOW), D(30000), NOW
    )
    gate.update_filters(
        {"BTCUSDT": usdm()}
    )  # fresh exchangeInfo: the old verdict may no longer hold
    assert isinstance(gate.request_entry(request(ts=NOW + 4000), account(), market()), Approved)


def test_a_filled_entry_gets_its_protection() -> None:
    gate = RiskGate(RiskConfig(), FILTERS)
    decision = gate.request_entry(request(), account(), market())
    assert isinstance(decision, Approved)
    assert (
        gate.on_order_event(
            filled("tl-BTCUSDT-1-en", "0.030", "30000", complete=False), D(30000), NOW
        ).commands
        == ()
    )
    update = gate.on_order_event(
        filled("tl-BTCUSDT-1-en", "0.036", "30010", trade=2), D(30010), NOW
    )
    # average (0.030 x 30000 + 0.036 x 30010) / 0.066 = 30005.4545..., stop 300 below, 0.033 + 0.033
    assert ids(update.commands) == [
        "tl-BTCUSDT-1-sl1",
        "tl-BTCUSDT-1-tp1",
        "tl-BTCUSDT-1-sl2",
        "tl-BTCUSDT-1-tp2",
    ]
    stops = [c.intent for c in update.commands if c.intent.type is OrderType.STOP_MARKET]
    assert [(s.quantity, s.stop_price) for s in stops] == [(D("0.033"), D("29705.5"))] * 2


def test_a_partly_filled_entry_that_is_cancelled_protects_what_filled() -> None:
    gate = RiskGate(RiskConfig(entry_order_type="LIMIT"), FILTERS)
    req = EntryRequest("BTCUSDT", Side.BUY, D(1), D(300), D(30000), NOW, limit_price=D(30000))
    decision = gate.request_entry(req, account(), market())
    assert isinstance(decision, Approved)
    gate.on_order_event(filled("tl-BTCUSDT-1-en", "0.020", "30000", complete=False), D(30000), NOW)
    update = gate.on_order_event(OrderCanceled("BTCUSDT", "tl-BTCUSDT-1-en", NOW), D(30000), NOW)
    assert sum(
        c.intent.quantity for c in update.commands if c.intent.type is OrderType.STOP_MARKET
    ) == D("0.020")


def test_a_stop_out_starts_the_cooldown() -> None:
    gate = RiskGate(RiskConfig(), FILTERS)
    gate.request_entry(request(), account(), market())
    gate.on_order_event(filled("tl-BTCUSDT-1-en", "0.066", "30000"), D(30000), NOW)
    for level, qty in ((1, "0.033"), (2, "0.033")):
        gate.on_order_event(
            filled(
                f"tl-BTCUSDT-1-sl{level}", qty, "29700", Side.SELL, ts=NOW + 5000, trade=10 + level
            ),
            D(29690),
            NOW + 5000,
        )
    assert gate.stop_outs_ms == {"BTCUSDT": NOW + 5000} and "BTCUSDT" not in gate.plans
    later = gate.request_entry(request(ts=NOW + 60_000), account(), market(now=NOW + 60_000))
    assert isinstance(later, Denied) and later.reason is DenialReason.COOLDOWN_AFTER_STOP
    after = NOW + 5000 + 900_000
    assert isinstance(gate.request_entry(request(ts=after), account(), market(now=after)), Approved)


def test_exit_order_keeps_protection_until_sent_on_futures_and_cancels_first_on_spot() -> None:
    gate = RiskGate(RiskConfig(), FILTERS)
    gate.request_entry(request(), account(), market())
    gate.on_order_event(filled("tl-BTCUSDT-1-en", "0.066", "30000"), D(30000), NOW)
    gate.request_entry(request("BNBUSDT", ref="600", stop="6"), account(), market("BNBUSDT"))
    gate.on_order_event(filled("tl-BNBUSDT-2-en", "1.111", "600", symbol="BNBUSDT"), D(600), NOW)
    fut = gate.request_exit(PositionView("BTCUSDT", Side.BUY, D("0.066"), D(30000)), D(30100), NOW)
    assert ids(fut.commands) == [
        "tl-BTCUSDT-3-ex",
        "cancel tl-BTCUSDT-1-sl1",
        "cancel tl-BTCUSDT-1-tp1",
        "cancel tl-BTCUSDT-1-sl2",
        "cancel tl-BTCUSDT-1-tp2",
    ]
    assert fut.commands[0].intent.reduce_only and fut.commands[0].intent.side is Side.SELL
    sp = gate.request_exit(PositionView("BNBUSDT", Side.BUY, D("1.111"), D(600)), D(601), NOW)
    assert ids(sp.commands)[-1] == "tl-BNBUSDT-4-ex" and ids(sp.commands)[0].startswith("cancel ")
    assert gate.plans == {}
    assert isinstance(gate.request_cancel("BTCUSDT", "x", NOW).commands[0], CancelOrder)


def test_halt_cancels_entries_and_keeps_protection_unless_flattening() -> None:
    gate = RiskGate(RiskConfig(), FILTERS)
    gate.request_entry(request(), account(), market())
    gate.on_order_event(filled("tl-BTCUSDT-1-en", "0.066", "30000"), D(30000), NOW)
    orders = [OpenOrderView("BNBUSDT", "tl-BNBUSDT-2-en", OrderRole.ENTRY)] + [
        OpenOrderView("BTCUSDT", o.client_order_id, o.role)
        for o in gate.plans["BTCUSDT"].working_orders()
    ]
    position = [PositionView("BTCUSDT", Side.BUY, D("0.066"), D(30000))]
    update = gate.observe(EquityObserved(D(10000), NOW), open_orders=orders, positions=position)
    assert update.commands == () and gate.trading_state is TradingState.ACTIVE
    update = gate.observe(
        EquityObserved(D(7900), NOW + 1000), open_orders=orders, positions=position
    )
    assert (
        gate.trading_state is TradingState.HALTED
        and update.transitions[-1].to_state is TradingState.HALTED
    )
    assert ids(update.commands) == ["cancel tl-BNBUSDT-2-en"] and "BTCUSDT" in gate.plans


def test_halt_with_flatten_closes_positions_and_forgets_their_protection() -> None:
    gate = RiskGate(RiskConfig(flatten_on_halt=True), FILTERS)
    gate.request_entry(request(), account(), market())
    gate.on_order_event(filled("tl-BTCUSDT-1-en", "0.066", "30000"), D(30000), NOW)
    orders = [
        OpenOrderView("BTCUSDT", "tl-BTCUSDT-1-sl1", OrderRole.STOP_LOSS)
    ]  # the venue view lags
    update = gate.observe(
        HaltRequested(NOW + 1000),
        open_orders=orders,
        positions=[PositionView("BTCUSDT", Side.BUY, D("0.066"), D(30000))],
        reference_prices={"BTCUSDT": D(29900)},
    )
    assert ids(update.commands) == [
        "cancel tl-BTCUSDT-1-sl1",
        "cancel tl-BTCUSDT-1-tp1",
        "cancel tl-BTCUSDT-1-sl2",
        "cancel tl-BTCUSDT-1-tp2",
        "tl-BTCUSDT-2-fl",
    ]
    assert gate.plans == {} and gate.next_seq == 3
    echo = gate.on_order_event(OrderCanceled("BTCUSDT", "tl-BTCUSDT-1-sl1", NOW), D(29900), NOW)
    assert echo.commands == ()  # no "lost stop" re-placement after a deliberate flatten


def test_dca_adds_within_limits_and_replans_protection() -> None:
    config = RiskConfig(leverage=D(5), dca=DcaConfig(enabled=True, max_adds=1, spacing_pct=D(2)))
    gate = RiskGate(config, FILTERS)
    entry = gate.request_entry(request(stop="3000"), account(), market())  # 100 / 3000 -> 0.033
    assert isinstance(entry, Approved) and entry.intent.quantity == D("0.033")
    gate.on_order_event(filled("tl-BTCUSDT-1-en", "0.033", "30000"), D(30000), NOW)
    assert (
        gate.request_add("BTCUSDT", D(29401), NOW, account(), market()) is None
    )  # 1.997 % against
    add = gate.request_add("BTCUSDT", D(29400), NOW, account(), market())
    assert isinstance(add, Approved) and ids(add.commands) == ["tl-BTCUSDT-1-dc1"]
    assert add.intent.quantity == D("0.033") and add.intent.role is OrderRole.DCA
    busy = gate.request_add("BTCUSDT", D(29000), NOW, account(), market())
    assert isinstance(busy, Denied) and busy.reason is DenialReason.DCA_LIMIT
    update = gate.on_order_event(filled("tl-BTCUSDT-1-dc1", "0.033", "29400"), D(29400), NOW)
    # average 29700, stop stays at 27000: new legs for 0.066 at revision 1
    assert ids(update.commands)[:4] == [
        "cancel tl-BTCUSDT-1-sl1",
        "cancel tl-BTCUSDT-1-tp1",
        "cancel tl-BTCUSDT-1-sl2",
        "cancel tl-BTCUSDT-1-tp2",
    ]
    new_stops = [
        c.intent
        for c in update.commands
        if isinstance(c, SubmitOrder) and c.intent.type is OrderType.STOP_MARKET
    ]
    assert [(s.client_order_id, s.stop_price) for s in new_stops] == [
        ("tl-BTCUSDT-1-sl1r1", D("27000.0")),
        ("tl-BTCUSDT-1-sl2r1", D("27000.0")),
    ]
    assert sum(s.quantity for s in new_stops) == D("0.066")
    assert (
        gate.request_add("BTCUSDT", D(20000), NOW, account(), market()) is None
    )  # max_adds 1 used


def test_dca_never_adds_beyond_the_stop_or_the_exposure_cap() -> None:
    config = RiskConfig(
        dca=DcaConfig(enabled=True, max_adds=3, spacing_pct=D(2), size_multiplier=D(2))
    )
    gate = RiskGate(config, FILTERS)
    gate.request_entry(request(stop="3000"), account(), market())  # 0.033 BTC, stop 27000
    gate.on_order_event(filled("tl-BTCUSDT-1-en", "0.033", "30000"), D(30000), NOW)
    beyond = gate.request_add("BTCUSDT", D(26999), NOW, account(), market())
    assert (
        isinstance(beyond, Denied)
        and beyond.reason is DenialReason.DCA_LIMIT
        and "beyond the stop" in beyond.detail
    )
    # add 1 would be 0.066; cap at 29400 is 2000 / 29400 = 0.068027 BTC, minus 0.033 held -> 0.035
    add = gate.request_add("BTCUSDT", D(29400), NOW, account(), market())
    assert isinstance(add, Approved) and add.intent.quantity == D("0.035")
    gate.on_order_event(filled("tl-BTCUSDT-1-dc1", "0.035", "29400"), D(29400), NOW)
    poor = account(
        equity=D(2000), day_start_equity=D(2000)
    )  # cap 400 / 28000 = 0.0143 < 0.068 held
    capped = gate.request_add("BTCUSDT", D(28000), NOW, poor, market())
    assert isinstance(capped, Denied) and capped.reason is DenialReason.DCA_LIMIT


def test_dca_is_blocked_while_reducing() -> None:
    config = RiskConfig(
        leverage=D(5), daily_loss_limit_pct=D(50), dca=DcaConfig(enabled=True, spacing_pct=D(2))
    )
    gate = RiskGate(config, FILTERS)
    gate.request_entry(request(stop="3000"), account(), market())
    gate.on_order_event(filled("tl-BTCUSDT-1-en", "0.033", "30000"), D(30000), NOW)
    gate.observe(EquityObserved(D(10000), NOW))
    gate.observe(EquityObserved(D(8900), NOW + 1))  # 11 % drawdown -> REDUCING
    add = gate.request_add("BTCUSDT", D(29400), NOW, account(), market())
    assert isinstance(add, Denied) and add.reason is DenialReason.TRADING_REDUCING


def test_a_second_exit_waits_for_the_first_to_finish() -> None:
    """An asynchronous venue reports the exit's fill later: asking again must not sell twice."""
    gate = RiskGate(RiskConfig(), FILTERS)
    view = PositionView("BTCUSDT", Side.BUY, D("0.010"), D(29000))
    first = gate.request_exit(view, D(29000), NOW)
    assert isinstance(first, Approved) and ids(first.commands) == ["tl-BTCUSDT-1-ex"]
    again = gate.request_exit(view, D(29000), NOW + 1000)
    assert isinstance(again, Denied) and again.reason is DenialReason.EXIT_WORKING
    gate.on_order_event(filled("tl-BTCUSDT-1-ex", "0.004", "29000", Side.SELL, complete=False), D(29000), NOW)
    assert isinstance(gate.request_exit(view, D(29000), NOW + 2000), Denied)  # still working
    gate.on_order_event(OrderRejected("BTCUSDT", "tl-BTCUSDT-1-ex", "OTHER", "x", NOW), D(29000), NOW)
    retry = gate.request_exit(view, D(29000), NOW + 3000)  # it ended: a new exit may go
    assert isinstance(retry, Approved) and ids(retry.commands) == ["tl-BTCUSDT-2-ex"]
    gate.on_order_event(filled("tl-BTCUSDT-2-ex", "0.010", "29000", Side.SELL, trade=2), D(29000), NOW)
    assert isinstance(gate.request_exit(view, D(29000), NOW + 4000), Approved)
