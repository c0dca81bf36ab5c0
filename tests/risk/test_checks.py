"""Pre-trade checks: each rule denies exactly its case, with its typed reason."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

import pytest

from engine.model import Side
from risk.checks import (
    ADD_RULES,
    AccountView,
    Allowed,
    DenialReason,
    Denied,
    EntryContext,
    MarketView,
    PositionView,
    check_entry,
)
from risk.config import RiskConfig
from risk.state import TradingState

NOW = 1_700_000_000_000
CONFIG = RiskConfig()  # 3 positions, cooldown 900 s, daily loss 3 %, book age 10 s


def ctx(**changes: object) -> EntryContext:
    base = EntryContext(
        symbol="BTCUSDT",
        side=Side.BUY,
        account=AccountView(equity=D(10000), day_start_equity=D(10000)),
        market=MarketView(
            "BTCUSDT", book_valid=True, last_book_update_ms=NOW - 100, model_warm=True
        ),
        state=TradingState.ACTIVE,
        now_ms=NOW,
        shorting_allowed=True,
    )
    return replace(base, **changes)


def account(**changes: object) -> AccountView:
    return replace(ctx().account, **changes)


def market(**changes: object) -> MarketView:
    return replace(ctx().market, **changes)


def pos(symbol: str, side: Side = Side.BUY) -> PositionView:
    return PositionView(symbol, side, D(1), D(100))


def reason(c: EntryContext, rules: tuple = ()) -> DenialReason | None:
    decision = check_entry(c, CONFIG, rules) if rules else check_entry(c, CONFIG)
    return decision.reason if isinstance(decision, Denied) else None


def test_a_clean_entry_is_allowed() -> None:
    assert isinstance(check_entry(ctx(), CONFIG), Allowed)


@pytest.mark.parametrize(
    "state,expected",
    [
        (TradingState.HALTED, DenialReason.TRADING_HALTED),
        (TradingState.REDUCING, DenialReason.TRADING_REDUCING),
    ],
)
def test_trading_state_blocks_new_entries(state: TradingState, expected: DenialReason) -> None:
    assert reason(ctx(state=state)) is expected


def test_model_must_be_warm() -> None:
    assert reason(ctx(market=market(model_warm=False))) is DenialReason.MODEL_NOT_WARM


def test_book_must_be_valid() -> None:
    assert reason(ctx(market=market(book_valid=False))) is DenialReason.BOOK_INVALID


def test_book_must_be_fresh() -> None:
    assert (
        reason(ctx(market=market(last_book_update_ms=NOW - 10_000))) is None
    )  # exactly 10 s: still fresh
    assert reason(ctx(market=market(last_book_update_ms=NOW - 10_001))) is DenialReason.BOOK_STALE
    assert reason(ctx(market=market(last_book_update_ms=None))) is DenialReason.BOOK_STALE


def test_symbol_must_be_trading() -> None:
    assert reason(ctx(market=market(symbol_trading=False))) is DenialReason.SYMBOL_NOT_TRADING


def test_spot_cannot_open_a_short() -> None:
    assert reason(ctx(side=Side.SELL, shorting_allowed=False)) is DenialReason.SHORT_NOT_SUPPORTED
    assert reason(ctx(side=Side.SELL, shorting_allowed=True)) is None


def test_one_position_per_symbol() -> None:
    assert reason(ctx(account=account(positions=(pos("BTCUSDT"),)))) is DenialReason.POSITION_EXISTS
    # A working entry order counts as the position it will become.
    assert (
        reason(ctx(account=account(pending_entries=(pos("BTCUSDT"),))))
        is DenialReason.POSITION_EXISTS
    )


def test_no_opposite_position() -> None:
    short = pos("BTCUSDT", Side.SELL)
    assert reason(ctx(account=account(positions=(short,)))) is DenialReason.OPPOSITE_POSITION


def test_max_open_positions() -> None:
    two = (pos("ETHUSDT"), pos("BNBUSDT"))
    assert reason(ctx(account=account(positions=two))) is None
    three = account(positions=two, pending_entries=(pos("XRPUSDT"),))
    assert reason(ctx(account=three)) is DenialReason.MAX_OPEN_POSITIONS


def test_cooldown_after_a_stop_out() -> None:
    just = account(last_stop_out_ms={"BTCUSDT": NOW - 899_999})
    assert reason(ctx(account=just)) is DenialReason.COOLDOWN_AFTER_STOP
    assert reason(ctx(account=account(last_stop_out_ms={"BTCUSDT": NOW - 900_000}))) is None
    assert reason(ctx(account=account(last_stop_out_ms={"ETHUSDT": NOW}))) is None  # other symbol


def test_daily_loss_limit() -> None:
    # 3 % of 10000 = 300.
    assert reason(ctx(account=account(realized_pnl_today=D("-299.99")))) is None
    assert reason(ctx(account=account(realized_pnl_today=D(-300)))) is DenialReason.DAILY_LOSS_LIMIT


def test_adds_skip_the_position_rules_but_keep_the_rest() -> None:
    holding = account(positions=(pos("BTCUSDT"), pos("ETHUSDT"), pos("BNBUSDT")))
    assert reason(ctx(account=holding), ADD_RULES) is None
    assert (
        reason(ctx(account=holding, state=TradingState.REDUCING), ADD_RULES)
        is DenialReason.TRADING_REDUCING
    )


def test_halt_is_reported_before_anything_else() -> None:
    everything_wrong = ctx(
        state=TradingState.HALTED,
        market=market(book_valid=False, model_warm=False),
        account=account(realized_pnl_today=D(-1000)),
    )
    assert reason(everything_wrong) is DenialReason.TRADING_HALTED
