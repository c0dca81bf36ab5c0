"""Parameters of the twelve vote signals and of regime detection (frozen pydantic models).

Windows count one-minute candles. Each model's `lookback` is the number of candles its signal
needs (the candle that just closed included); a shorter window makes the signal abstain.
The definitions these parameters enter are in docs/strategies.md.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Params(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @property
    def lookback(self) -> int:  # pragma: no cover - every subclass overrides
        raise NotImplementedError


class BbSqueezeParams(_Params):
    period: Annotated[int, Field(ge=2)] = 20
    nbdev: Annotated[float, Field(gt=0)] = 2.0
    squeeze_window: Annotated[int, Field(ge=5)] = 120
    squeeze_quantile: Annotated[float, Field(gt=0, lt=1)] = 0.2

    @property
    def lookback(self) -> int:
        return self.period + self.squeeze_window


class VwapPullbackParams(_Params):
    vwap_window: Annotated[int, Field(ge=2)] = 60
    trend_window: Annotated[int, Field(ge=2)] = 30
    min_side_share: Annotated[float, Field(gt=0.5, le=1)] = 0.7
    ema_period: Annotated[int, Field(ge=2)] = 20
    ema_slope_bars: Annotated[int, Field(ge=1)] = 5

    @property
    def lookback(self) -> int:
        return max(self.vwap_window + self.trend_window, self.ema_period + self.ema_slope_bars)


class VwapReversionParams(_Params):
    window: Annotated[int, Field(ge=2)] = 60
    band_sigmas: Annotated[float, Field(gt=0)] = 2.0

    @property
    def lookback(self) -> int:
        return self.window


class BreakoutRetestParams(_Params):
    range_window: Annotated[int, Field(ge=2)] = 30
    breakout_window: Annotated[int, Field(ge=1)] = 10
    atr_period: Annotated[int, Field(ge=1)] = 14
    retest_atr: Annotated[float, Field(ge=0)] = 0.25

    @property
    def lookback(self) -> int:
        return max(self.range_window + self.breakout_window + 1, self.atr_period + 1)


class AtrMomentumParams(_Params):
    atr_period: Annotated[int, Field(ge=1)] = 14
    body_atr: Annotated[float, Field(gt=0)] = 1.5
    close_in_range: Annotated[float, Field(ge=0.5, le=1)] = 0.75
    volume_window: Annotated[int, Field(ge=1)] = 20
    volume_ratio: Annotated[float, Field(ge=0)] = 1.0

    @property
    def lookback(self) -> int:
        return max(self.atr_period + 2, self.volume_window + 1)


class RsiReversionParams(_Params):
    period: Annotated[int, Field(ge=2)] = 14
    oversold: Annotated[float, Field(gt=0, lt=50)] = 30.0
    overbought: Annotated[float, Field(gt=50, lt=100)] = 70.0
    full_strength_points: Annotated[float, Field(gt=0)] = 10.0

    @property
    def lookback(self) -> int:
        return self.period + 1


class SwingFailureParams(_Params):
    swing_window: Annotated[int, Field(ge=2)] = 20

    @property
    def lookback(self) -> int:
        return self.swing_window + 1


class EmaPinchParams(_Params):
    fast: Annotated[int, Field(ge=2)] = 8
    slow: Annotated[int, Field(ge=3)] = 21
    atr_period: Annotated[int, Field(ge=1)] = 14
    pinch_atr: Annotated[float, Field(ge=0)] = 0.2
    pinch_window: Annotated[int, Field(ge=1)] = 5
    release_atr: Annotated[float, Field(gt=0)] = 0.5

    @model_validator(mode="after")
    def _fast_below_slow(self) -> EmaPinchParams:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be shorter than slow ({self.slow})")
        if self.pinch_atr >= self.release_atr:
            raise ValueError("pinch_atr must be below release_atr")
        return self

    @property
    def lookback(self) -> int:
        return max(self.slow, self.atr_period + 1) + self.pinch_window


class CvdParams(_Params):
    window: Annotated[int, Field(ge=1)] = 30
    min_imbalance: Annotated[float, Field(gt=0, le=1)] = 0.2

    @property
    def lookback(self) -> int:
        return self.window + 1


class FairValueGapParams(_Params):
    window: Annotated[int, Field(ge=3)] = 20
    atr_period: Annotated[int, Field(ge=1)] = 14
    min_gap_atr: Annotated[float, Field(ge=0)] = 0.1

    @property
    def lookback(self) -> int:
        return max(self.window + 3, self.atr_period + 1)


class PocParams(_Params):
    window: Annotated[int, Field(ge=2)] = 120
    bins: Annotated[int, Field(ge=2)] = 24
    atr_period: Annotated[int, Field(ge=1)] = 14
    distance_atr: Annotated[float, Field(gt=0)] = 6.0

    @property
    def lookback(self) -> int:
        return max(self.window, self.atr_period + 1)


class BookImbalanceParams(_Params):
    window: Annotated[int, Field(ge=1)] = 5
    min_imbalance: Annotated[float, Field(gt=0, le=1)] = 0.2

    @property
    def lookback(self) -> int:
        return self.window


class SignalParams(_Params):
    """Parameters of every vote signal, by signal name."""

    bb_squeeze: BbSqueezeParams = BbSqueezeParams()
    vwap_pullback: VwapPullbackParams = VwapPullbackParams()
    vwap_reversion: VwapReversionParams = VwapReversionParams()
    breakout_retest: BreakoutRetestParams = BreakoutRetestParams()
    atr_momentum: AtrMomentumParams = AtrMomentumParams()
    rsi_reversion: RsiReversionParams = RsiReversionParams()
    swing_failure: SwingFailureParams = SwingFailureParams()
    ema_pinch: EmaPinchParams = EmaPinchParams()
    cvd: CvdParams = CvdParams()
    fair_value_gap: FairValueGapParams = FairValueGapParams()
    poc: PocParams = PocParams()
    book_imbalance: BookImbalanceParams = BookImbalanceParams()


class RegimeParams(_Params):
    """Volatile when ATR / its mean over `atr_baseline` >= `volatile_atr_ratio`; else trend when
    ADX >= `trend_adx`; else flat."""

    adx_period: Annotated[int, Field(ge=2)] = 14
    trend_adx: Annotated[float, Field(gt=0, lt=100)] = 25.0
    atr_period: Annotated[int, Field(ge=1)] = 14
    atr_baseline: Annotated[int, Field(ge=2)] = 100
    volatile_atr_ratio: Annotated[float, Field(gt=1)] = 1.5

    @property
    def lookback(self) -> int:
        return max(self.atr_period + self.atr_baseline, 3 * self.adx_period)
