"""The `strategy:` config section: which strategy trades and how (frozen pydantic, extra="forbid").

    strategy:
      kind: auto            # auto = model when a promoted bundle exists, else vote
      entry: {equity_fraction: 0.1, cooldown_s: 300}
      exits: {stop_loss_pct: 1.0, take_profits: [{pct: 1.5, fraction: 1.0}], max_hold_s: 7200}
      model: {thresholds: {BTCUSDT: 0.62}, confirm_s: 5, exit_ratio: 0.5}
      vote: {threshold: 0.3, weights: {cvd: 2.0}, multipliers: {flat: {rsi_reversion: 2.0}}}
      filters: {funding: {enabled: true}}

Weights and multipliers given in YAML are merged over the defaults, so naming one signal keeps
the others' defaults.
"""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine.model import is_binance_symbol
from strategy.signals.params import RegimeParams, SignalParams
from strategy.signals.votes import SIGNAL_NAMES, Regime

SignalName = Literal[
    "bb_squeeze", "vwap_pullback", "vwap_reversion", "breakout_retest", "atr_momentum",
    "rsi_reversion", "swing_failure", "ema_pinch", "cvd", "fair_value_gap", "poc",
    "book_imbalance",
]
assert get_args(SignalName) == SIGNAL_NAMES
Weights = dict[SignalName, float]

TREND_FOLLOWING = frozenset({"bb_squeeze", "vwap_pullback", "breakout_retest", "atr_momentum",
                             "ema_pinch", "cvd", "fair_value_gap"})
MEAN_REVERTING = frozenset({"vwap_reversion", "rsi_reversion", "swing_failure", "poc"})


def _multipliers(trend_following: float, mean_reverting: float, other: float) -> dict[str, float]:
    return {
        name: trend_following if name in TREND_FOLLOWING
        else mean_reverting if name in MEAN_REVERTING else other
        for name in SIGNAL_NAMES
    }


DEFAULT_WEIGHTS: dict[str, float] = {name: 1.0 for name in SIGNAL_NAMES}
DEFAULT_MULTIPLIERS: dict[Regime, dict[str, float]] = {
    Regime.TREND: _multipliers(1.5, 0.5, 1.0),
    Regime.FLAT: _multipliers(0.5, 1.5, 1.0),
    Regime.VOLATILE: _multipliers(1.0, 0.75, 0.5),
}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _check_symbols(value: dict[str, float]) -> dict[str, float]:
    bad = sorted(s for s in value if not is_binance_symbol(s))
    if bad:
        raise ValueError(f"not Binance symbols: {', '.join(bad)}")
    return value


class EntryConfig(_Frozen):
    equity_fraction: Annotated[float, Field(gt=0, le=1)] = 0.1  # asked for at full strength
    cooldown_s: Annotated[int, Field(ge=0)] = 300  # after an entry request or a close, per symbol
    allow_short: bool = True  # futures only; spot is always long-only
    require_valid_book: bool = True  # no entry while the symbol's book is out of sync


class TakeProfitConfig(_Frozen):
    pct: Annotated[float, Field(gt=0)]  # distance from the entry, percent of the entry price
    fraction: Annotated[float, Field(gt=0, le=1)] = 1.0  # of the position closed at this level


class ExitConfig(_Frozen):
    stop_loss_pct: Annotated[float, Field(gt=0, lt=100)] | None = 1.0
    # stop = stop_atr * ATR(atr_period) of candles
    stop_atr: Annotated[float, Field(gt=0)] | None = None
    atr_period: Annotated[int, Field(ge=1)] = 14
    take_profits: tuple[TakeProfitConfig, ...] = (TakeProfitConfig(pct=1.5),)
    # Binance callback rate range
    trailing_stop_pct: Annotated[float, Field(gt=0, le=10)] | None = None
    max_hold_s: Annotated[int, Field(gt=0)] | None = 7200

    @model_validator(mode="after")
    def _always_a_stop(self) -> ExitConfig:
        if self.stop_loss_pct is None and self.stop_atr is None:
            raise ValueError("set stop_loss_pct or stop_atr: every position needs a stop")
        return self

    @field_validator("take_profits")
    @classmethod
    def _fractions_fit(cls, value: tuple[TakeProfitConfig, ...]) -> tuple[TakeProfitConfig, ...]:
        if sum(tp.fraction for tp in value) > 1 + 1e-9:
            raise ValueError("take-profit fractions add up to more than 1")
        return value


class ModelStrategyConfig(_Frozen):
    thresholds: dict[str, float] = {}  # per coin, over the bundle's own threshold
    confirm_s: Annotated[int, Field(ge=0)] = 0  # confidence must stay >= threshold this long
    # exit below exit_ratio * threshold
    exit_ratio: Annotated[float, Field(ge=0, le=1)] | None = 0.5
    exit_levels: dict[str, float] = {}  # per coin absolute exit level, over exit_ratio
    sides: Literal["models", "combined"] = "models"  # where a short's confidence comes from
    # |score| threshold in "combined" mode
    combined_threshold: Annotated[float, Field(gt=0, le=1)] = 0.3

    @field_validator("thresholds", "exit_levels")
    @classmethod
    def _levels(cls, value: dict[str, float]) -> dict[str, float]:
        bad = sorted(s for s, v in value.items() if not 0.0 <= v <= 1.0)
        if bad:
            raise ValueError(f"levels must be in [0, 1]: {', '.join(bad)}")
        return _check_symbols(value)


class VoteConfig(_Frozen):
    # enter long at >= threshold, short at <= -it
    threshold: Annotated[float, Field(gt=0, le=1)] = 0.25
    # leave when it turns this far against
    exit_confidence: Annotated[float, Field(ge=0, le=1)] | None = 0.1
    window_candles: Annotated[int, Field(ge=2)] = 300  # candles handed to every signal
    weights: Weights = DEFAULT_WEIGHTS  # type: ignore[assignment]
    multipliers: dict[Regime, Weights] = DEFAULT_MULTIPLIERS  # type: ignore[assignment]
    signals: SignalParams = SignalParams()
    regime: RegimeParams = RegimeParams()

    @field_validator("weights", mode="before")
    @classmethod
    def _merge_weights(cls, value: Any) -> Any:
        return {**DEFAULT_WEIGHTS, **value} if isinstance(value, dict) else value

    @field_validator("multipliers", mode="before")
    @classmethod
    def _merge_multipliers(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        merged: dict[Any, Any] = {r.value: dict(m) for r, m in DEFAULT_MULTIPLIERS.items()}
        for regime, table in value.items():
            key = regime.value if isinstance(regime, Regime) else regime
            merged[key] = {**merged.get(key, {}), **table} if isinstance(table, dict) else table
        return merged

    @field_validator("weights")
    @classmethod
    def _non_negative(cls, value: dict[str, float]) -> dict[str, float]:
        bad = sorted(k for k, v in value.items() if v < 0)
        if bad:
            raise ValueError(f"weights must be >= 0: {', '.join(bad)}")
        return value

    @field_validator("multipliers")
    @classmethod
    def _multipliers_non_negative(cls, value: dict[Regime, dict[str, float]]) -> Any:
        bad = sorted(f"{r.value}.{k}" for r, m in value.items() for k, v in m.items() if v < 0)
        if bad:
            raise ValueError(f"multipliers must be >= 0: {', '.join(bad)}")
        return value

    @model_validator(mode="after")
    def _window_covers_warmup(self) -> VoteConfig:
        if self.window_candles < self.warmup_candles:
            raise ValueError(
                f"window_candles ({self.window_candles}) is shorter than the signals' and "
                f"regime's look-back ({self.warmup_candles})"
            )
        return self

    @cached_property
    def warmup_candles(self) -> int:
        """Candles needed before the first vote: the longest look-back of regime and signals."""
        lookbacks = [getattr(self.signals, name).lookback for name in self.active_signals]
        return max([self.regime.lookback, *lookbacks])

    @cached_property
    def active_signals(self) -> tuple[str, ...]:
        return tuple(name for name in SIGNAL_NAMES if self.weights[name] > 0)  # type: ignore[index]


class FundingFilterConfig(_Frozen):
    enabled: bool = False
    max_long_rate: Annotated[float, Field(ge=0)] = 0.0005  # no long while longs pay more than this
    # no short while shorts pay more than this
    max_short_rate: Annotated[float, Field(ge=0)] = 0.0005
    max_age_s: Annotated[int, Field(gt=0)] = 120  # older markPrice data counts as unknown (neutral)


class BasisFilterConfig(_Frozen):
    enabled: bool = False
    max_premium_bp: Annotated[float, Field(ge=0)] = 30.0  # futures above spot by more: no long
    max_discount_bp: Annotated[float, Field(ge=0)] = 30.0  # futures below spot by more: no short
    max_age_s: Annotated[int, Field(gt=0)] = 60


class SentimentFilterConfig(_Frozen):
    enabled: bool = False
    fear_greed_url: str = "https://api.alternative.me/fng/?limit=1"
    dominance_url: str = "https://api.coingecko.com/api/v3/global"
    ttl_s: Annotated[int, Field(gt=0)] = 3600  # a good value is reused this long before refetching
    # after a failure, wait this long before trying again
    retry_s: Annotated[int, Field(gt=0)] = 300
    # a good value older than this counts as unknown
    max_stale_s: Annotated[int, Field(gt=0)] = 6 * 3600
    timeout_s: Annotated[float, Field(gt=0)] = 10.0
    extreme_greed: Annotated[float, Field(ge=0, le=100)] = 80.0  # at or above: no long
    extreme_fear: Annotated[float, Field(ge=0, le=100)] = 20.0  # at or below: no short
    # alts: no long above
    alt_long_max_dominance_pct: Annotated[float, Field(gt=0, le=100)] | None = None


class FiltersConfig(_Frozen):
    funding: FundingFilterConfig = FundingFilterConfig()
    basis: BasisFilterConfig = BasisFilterConfig()
    sentiment: SentimentFilterConfig = SentimentFilterConfig()


class StrategyConfig(_Frozen):
    """The `strategy:` section of config.yaml."""

    kind: Literal["auto", "vote", "model"] = "auto"
    entry: EntryConfig = EntryConfig()
    exits: ExitConfig = ExitConfig()
    model: ModelStrategyConfig = ModelStrategyConfig()
    vote: VoteConfig = VoteConfig()
    filters: FiltersConfig = FiltersConfig()
