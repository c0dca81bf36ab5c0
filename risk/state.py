"""Trading state ACTIVE -> REDUCING -> HALTED as a pure fold over observations.

    step(state, observation, config) -> (state, transitions)

REDUCING means no new entries or adds; exits, cancels and protective orders go on. HALTED means
the same and, on entry, working entry orders are cancelled and (if `flatten_on_halt`) positions
are closed at market: see `halt_commands`.

Triggers and how each clears:
- peak-to-trough equity drawdown >= reducing_drawdown_pct -> REDUCING (clears when it recovers);
  >= emergency_drawdown_pct -> HALTED;
- loss of equity since the UTC day started >= daily_loss_limit_pct -> REDUCING until the next UTC
  day (HALTED if daily_loss_halts);
- no market data for stale_data_s -> REDUCING (clears when data flows again);
- error_storm_count errors within error_storm_window_s -> HALTED;
- a manual halt -> HALTED.
HALTED is left only by a manual resume, which also acknowledges the losses so far (peak and day
start reset to current equity, error history cleared). With auto_recover false, REDUCING is
latched the same way.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from decimal import Decimal

from risk.config import RiskConfig

DAY_MS = 86_400_000


class TradingState(enum.StrEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


class Trigger(enum.StrEnum):
    DRAWDOWN = "DRAWDOWN"
    EMERGENCY_DRAWDOWN = "EMERGENCY_DRAWDOWN"
    DAILY_LOSS = "DAILY_LOSS"
    STALE_DATA = "STALE_DATA"
    ERROR_STORM = "ERROR_STORM"
    UNPROTECTED = "UNPROTECTED"  # a position was found without a protective stop (start-up)
    MANUAL_HALT = "MANUAL_HALT"
    MANUAL_RESUME = "MANUAL_RESUME"
    CLEARED = "CLEARED"  # the conditions behind REDUCING went away


# -- observations ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EquityObserved:
    equity: Decimal  # total account equity in the quote/margin asset, incl. unrealised PnL
    ts_ms: int


@dataclass(frozen=True, slots=True)
class DataObserved:
    """Valid market data arrived (a synced book event or a folded row)."""

    ts_ms: int


@dataclass(frozen=True, slots=True)
class ClockTicked:
    """Time passed with nothing else to report (lets staleness trigger without data)."""

    ts_ms: int


@dataclass(frozen=True, slots=True)
class ErrorObserved:
    ts_ms: int
    kind: str = ""


@dataclass(frozen=True, slots=True)
class HaltRequested:
    ts_ms: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ResumeRequested:
    ts_ms: int
    by: str = ""


@dataclass(frozen=True, slots=True)
class ProtectionObserved:
    """Start-up reconciliation's verdict: these positions have no protective stop on the venue.

    An empty tuple clears the condition (every position is protected again).
    """

    ts_ms: int
    unprotected: tuple[str, ...] = ()


Observation = (
    EquityObserved
    | DataObserved
    | ClockTicked
    | ErrorObserved
    | HaltRequested
    | ResumeRequested
    | ProtectionObserved
)


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of trading state and the trigger behind it (one alert each)."""

    from_state: TradingState
    to_state: TradingState
    trigger: Trigger
    detail: str
    ts_ms: int


@dataclass(frozen=True, slots=True)
class RiskState:
    mode: TradingState = TradingState.ACTIVE
    equity: Decimal | None = None
    peak_equity: Decimal | None = None
    day: int | None = None  # UTC day number of day_start_equity
    day_start_equity: Decimal | None = None
    last_data_ms: int | None = None
    error_times_ms: tuple[int, ...] = ()
    conditions: frozenset[Trigger] = frozenset()  # active REDUCING-level triggers
    halt_trigger: Trigger | None = None  # latched until a manual resume

    @property
    def drawdown_pct(self) -> Decimal:
        """Return the current peak-to-trough fall of equity in percent (0 without data)."""
        if not self.peak_equity or self.equity is None:
            return Decimal(0)
        return (self.peak_equity - self.equity) / self.peak_equity * 100


def _mode(state: RiskState) -> TradingState:
    if state.halt_trigger is not None:
        return TradingState.HALTED
    return TradingState.REDUCING if state.conditions else TradingState.ACTIVE


def _set(state: RiskState, trigger: Trigger, on: bool, config: RiskConfig) -> RiskState:
    if on:
        return replace(state, conditions=state.conditions | {trigger})
    if trigger in state.conditions and config.auto_recover:
        return replace(state, conditions=state.conditions - {trigger})
    return state


def _halt(state: RiskState, trigger: Trigger) -> RiskState:
    return state if state.halt_trigger is not None else replace(state, halt_trigger=trigger)


def _on_equity(state: RiskState, obs: EquityObserved, config: RiskConfig) -> RiskState:
    day = obs.ts_ms // DAY_MS
    if state.day != day:
        # The daily loss condition belongs to the day that ended; it clears even if latched.
        state = replace(
            state,
            day=day,
            day_start_equity=obs.equity,
            conditions=state.conditions - {Trigger.DAILY_LOSS},
        )
    peak = obs.equity if state.peak_equity is None else max(state.peak_equity, obs.equity)
    state = replace(state, equity=obs.equity, peak_equity=peak)
    drawdown = state.drawdown_pct
    if drawdown >= config.emergency_drawdown_pct:
        state = _halt(state, Trigger.EMERGENCY_DRAWDOWN)
    state = _set(state, Trigger.DRAWDOWN, drawdown >= config.reducing_drawdown_pct, config)
    start = state.day_start_equity
    if start and (start - obs.equity) / start * 100 >= config.daily_loss_limit_pct:
        if config.daily_loss_halts:
            state = _halt(state, Trigger.DAILY_LOSS)
        state = replace(state, conditions=state.conditions | {Trigger.DAILY_LOSS})
    return state


def _check_stale(state: RiskState, now_ms: int, config: RiskConfig) -> RiskState:
    if state.last_data_ms is None:
        return state  # no feed yet: the book/model checks already block entries
    stale = now_ms - state.last_data_ms > config.stale_data_s * 1000
    return _set(state, Trigger.STALE_DATA, stale, config)


def _apply(state: RiskState, obs: Observation, config: RiskConfig) -> RiskState:
    if isinstance(obs, EquityObserved):
        state = _on_equity(state, obs, config)
    elif isinstance(obs, DataObserved):
        state = replace(state, last_data_ms=max(obs.ts_ms, state.last_data_ms or obs.ts_ms))
    elif isinstance(obs, ErrorObserved):
        horizon = obs.ts_ms - config.error_storm_window_s * 1000
        recent = tuple(t for t in state.error_times_ms if t > horizon) + (obs.ts_ms,)
        state = replace(state, error_times_ms=recent[-config.error_storm_count :])
        if len(recent) >= config.error_storm_count:
            state = _halt(state, Trigger.ERROR_STORM)
    elif isinstance(obs, ProtectionObserved):
        # not subject to auto_recover: only a verdict of "all protected" clears it
        conditions = state.conditions - {Trigger.UNPROTECTED}
        state = replace(state, conditions=conditions | ({Trigger.UNPROTECTED} if obs.unprotected else set()))
    elif isinstance(obs, HaltRequested):
        state = _halt(state, Trigger.MANUAL_HALT)
    elif isinstance(obs, ResumeRequested):
        state = replace(
            state,
            halt_trigger=None,
            conditions=frozenset(),
            error_times_ms=(),
            peak_equity=state.equity,
            day_start_equity=state.equity,
        )
    return _check_stale(state, obs.ts_ms, config)


def _detail(state: RiskState, trigger: Trigger, config: RiskConfig) -> str:
    if trigger in (Trigger.DRAWDOWN, Trigger.EMERGENCY_DRAWDOWN):
        return (
            f"drawdown {state.drawdown_pct:.2f} % from peak {state.peak_equity} to {state.equity}"
        )
    if trigger is Trigger.DAILY_LOSS:
        limit = config.daily_loss_limit_pct
        return f"equity {state.equity} vs day start {state.day_start_equity}: limit {limit} %"
    if trigger is Trigger.STALE_DATA:
        return f"no market data since {state.last_data_ms} (limit {config.stale_data_s} s)"
    if trigger is Trigger.UNPROTECTED:
        return "positions without a protective stop"
    if trigger is Trigger.ERROR_STORM:
        return f"{len(state.error_times_ms)} errors within {config.error_storm_window_s} s"
    return trigger.value.lower().replace("_", " ")


def step(
    state: RiskState, obs: Observation, config: RiskConfig
) -> tuple[RiskState, tuple[Transition, ...]]:
    """Fold one observation into the trading state; return the new state and any transition."""
    before = state
    state = _apply(state, obs, config)
    mode = _mode(state)
    state = replace(state, mode=mode)
    if mode is before.mode:
        return state, ()
    if isinstance(obs, ResumeRequested):
        trigger = Trigger.MANUAL_RESUME
    elif mode is TradingState.HALTED:
        assert state.halt_trigger is not None
        trigger = state.halt_trigger
    elif mode is TradingState.REDUCING and before.mode is TradingState.ACTIVE:
        trigger = min(state.conditions - before.conditions or state.conditions)
    else:
        trigger = Trigger.CLEARED
    detail = _detail(state, trigger, config)
    note = (
        ", ".join(obs.unprotected)
        if isinstance(obs, ProtectionObserved)
        else obs.reason
        if isinstance(obs, HaltRequested)
        else obs.by
        if isinstance(obs, ResumeRequested)
        else ""
    )
    if note:
        detail = f"{detail}: {note}"
    return state, (Transition(before.mode, mode, trigger, detail, obs.ts_ms),)
