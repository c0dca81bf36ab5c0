"""Trading state fold: every trigger moves the state, and only the documented way back exists."""

from __future__ import annotations

from decimal import Decimal as D

from risk.config import RiskConfig
from risk.state import (
    DAY_MS,
    ClockTicked,
    DataObserved,
    EquityObserved,
    ErrorObserved,
    HaltRequested,
    Observation,
    ResumeRequested,
    RiskState,
    TradingState,
    Transition,
    Trigger,
    step,
)

T0 = 1000 * DAY_MS + 3_600_000  # 01:00 UTC on some day
ACTIVE, REDUCING, HALTED = TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED
# Defaults: reducing at 10 % drawdown, halt at 20 %, stale 30 s, 10 errors / 60 s.
# Daily loss limit far away, to look at the drawdown alone (and the reverse).
DD_ONLY = RiskConfig(daily_loss_limit_pct=D(50))
DAILY_ONLY = RiskConfig(reducing_drawdown_pct=D(50), emergency_drawdown_pct=D(60))


def run(
    observations: list[Observation], config: RiskConfig = DD_ONLY, state: RiskState | None = None
) -> tuple[RiskState, list[Transition]]:
    state = state or RiskState()
    transitions: list[Transition] = []
    for obs in observations:
        state, out = step(state, obs, config)
        transitions += out
    return state, transitions


def equity(*values: str | int, start: int = T0) -> list[Observation]:
    return [EquityObserved(D(v), start + i * 1000) for i, v in enumerate(values)]


def test_drawdown_reduces_at_ten_percent_and_recovers_when_it_clears() -> None:
    state, moves = run(equity(10000, 9001))
    assert state.mode is ACTIVE and moves == []
    state, moves = run(equity(10000, 9000))
    assert state.mode is REDUCING
    assert [(m.from_state, m.to_state, m.trigger) for m in moves] == [
        (ACTIVE, REDUCING, Trigger.DRAWDOWN)
    ]
    assert "10.00 %" in moves[0].detail
    state, moves = run(equity(10000, 9000, 9100))
    assert state.mode is ACTIVE and moves[-1].trigger is Trigger.CLEARED


def test_without_auto_recover_reducing_waits_for_a_resume() -> None:
    config = RiskConfig(auto_recover=False, daily_loss_limit_pct=D(50))
    state, _ = run(equity(10000, 9000, 10000), config)
    assert state.mode is REDUCING
    state, moves = run([ResumeRequested(T0 + 10_000, by="ops")], config, state)
    assert (
        state.mode is ACTIVE
        and moves[0].trigger is Trigger.MANUAL_RESUME
        and "ops" in moves[0].detail
    )


def test_emergency_drawdown_halts_and_only_a_resume_undoes_it() -> None:
    state, moves = run(equity(10000, 8000))
    assert state.mode is HALTED and moves[-1].trigger is Trigger.EMERGENCY_DRAWDOWN
    state, _ = run(equity(10500, 11000, start=T0 + 10_000), state=state)
    assert state.mode is HALTED
    state, moves = run([ResumeRequested(T0 + 20_000)], state=state)
    assert state.mode is ACTIVE and state.peak_equity == D(11000)


def test_resume_acknowledges_the_loss_so_the_same_drawdown_does_not_halt_again() -> None:
    state, _ = run(equity(10000, 7900))
    state, _ = run([ResumeRequested(T0 + 5000), EquityObserved(D(7800), T0 + 6000)], state=state)
    assert state.mode is ACTIVE  # 7900 -> 7800 is 1.3 % from the new peak


def test_emergency_from_reducing() -> None:
    _, moves = run(equity(10000, 9000, 7999))
    assert [(m.from_state, m.to_state) for m in moves] == [(ACTIVE, REDUCING), (REDUCING, HALTED)]


def test_daily_loss_reduces_until_the_next_utc_day() -> None:
    state, moves = run(equity(10000, 9701), DAILY_ONLY)
    assert state.mode is ACTIVE
    state, moves = run(equity(10000, 9700, 9900), DAILY_ONLY)  # recovering intraday is not enough
    assert state.mode is REDUCING and moves[0].trigger is Trigger.DAILY_LOSS
    next_day = (T0 // DAY_MS + 1) * DAY_MS
    state, moves = run([EquityObserved(D(9900), next_day)], DAILY_ONLY, state)
    assert state.mode is ACTIVE and state.day_start_equity == D(9900)


def test_daily_loss_counts_from_the_day_start_not_the_peak() -> None:
    previous_day = T0 - DAY_MS
    state, _ = run(
        [
            EquityObserved(D(12000), previous_day),
            EquityObserved(D(10000), T0),
            EquityObserved(D(9800), T0 + 1000),
        ],
        DAILY_ONLY,
    )
    assert state.mode is ACTIVE  # 2 % down today, 18 % from the peak (thresholds 50/60 here)


def test_daily_loss_can_be_configured_to_halt() -> None:
    state, moves = run(
        equity(10000, 9700),
        RiskConfig(
            reducing_drawdown_pct=D(50), emergency_drawdown_pct=D(60), daily_loss_halts=True
        ),
    )
    assert state.mode is HALTED and moves[-1].trigger is Trigger.DAILY_LOSS


def test_stale_data_reduces_and_fresh_data_recovers() -> None:
    state, moves = run([DataObserved(T0), ClockTicked(T0 + 30_000)])
    assert state.mode is ACTIVE
    state, moves = run([ClockTicked(T0 + 30_001)], state=state)
    assert state.mode is REDUCING and moves[0].trigger is Trigger.STALE_DATA
    state, moves = run([DataObserved(T0 + 31_000)], state=state)
    assert state.mode is ACTIVE


def test_no_data_yet_is_not_stale() -> None:
    state, _ = run([ClockTicked(T0 + 10**9)])
    assert state.mode is ACTIVE


def test_error_storm_halts() -> None:
    nine = [ErrorObserved(T0 + i * 1000, "timeout") for i in range(9)]
    state, _ = run(nine)
    assert state.mode is ACTIVE
    state, moves = run([ErrorObserved(T0 + 59_000)], state=state)
    assert state.mode is HALTED and moves[0].trigger is Trigger.ERROR_STORM


def test_errors_spread_over_more_than_the_window_are_no_storm() -> None:
    state, _ = run([ErrorObserved(T0 + i * 7000) for i in range(30)])  # at most 9 within any 60 s
    assert state.mode is ACTIVE


def test_manual_halt_and_resume() -> None:
    state, moves = run([HaltRequested(T0, reason="telegram /stop")])
    assert (
        state.mode is HALTED
        and moves[0].trigger is Trigger.MANUAL_HALT
        and "telegram" in moves[0].detail
    )
    state, moves = run([HaltRequested(T0 + 1), *equity(10000, 7000, start=T0 + 2)], state=state)
    assert (
        moves == [] and state.halt_trigger is Trigger.MANUAL_HALT
    )  # first cause kept, no second alert
    state, moves = run([ResumeRequested(T0 + 2)], state=state)
    assert state.mode is ACTIVE


def test_resume_lands_in_reducing_when_data_is_stale() -> None:
    state, _ = run([DataObserved(T0), HaltRequested(T0 + 1)])
    state, moves = run([ResumeRequested(T0 + 60_000)], state=state)
    assert state.mode is REDUCING and moves[0].to_state is REDUCING
