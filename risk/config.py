"""Risk configuration: frozen pydantic models, embedded as `risk:` in the engine's config.yaml.

Percentages are in percent (`risk_pct: 1` is 1 % of equity); drawdowns are positive magnitudes
(`emergency_drawdown_pct: 20` halts at a 20 % peak-to-trough fall). Durations are in seconds.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TakeProfitLevel(_Frozen):
    """One target: at r_multiple x stop distance from entry, close `fraction` of the position."""

    r_multiple: Decimal = Field(gt=0)
    fraction: Decimal = Field(gt=0, le=1)


class TrailingConfig(_Frozen):
    """How the stop follows the trade once targets are hit."""

    break_even_after_first_target: bool = True
    # Per-side fee in percent added to the break-even price so a stop there loses nothing net.
    break_even_fee_pct: Decimal = Field(default=Decimal("0.1"), ge=0, lt=10)
    # After target n >= 2, move the stop to target n-1 (a ratchet) instead of keeping break-even.
    step_to_previous_target: bool = False
    # USDⓈ-M only: the last level becomes a native TRAILING_STOP_MARKET runner with this callback
    # rate (0.1..10 %), activated at that level's target price. None keeps a fixed target.
    callback_rate_pct: Decimal | None = Field(default=None, ge=Decimal("0.1"), le=10)


class DcaConfig(_Frozen):
    """Optional averaging-down: bounded number of adds, spaced, sized by a multiplier."""

    enabled: bool = False
    max_adds: int = Field(default=2, ge=0, le=10)
    spacing_pct: Decimal = Field(default=Decimal(2), gt=0, lt=100)  # adverse move from last fill
    size_multiplier: Decimal = Field(default=Decimal(1), gt=0, le=5)  # add n = initial x mult**n


class RiskConfig(_Frozen):
    """Every risk parameter with its default."""

    # sizing
    risk_pct: Decimal = Field(default=Decimal(1), gt=0, le=100)
    max_position_pct: Decimal = Field(default=Decimal(20), gt=0, le=100)
    leverage: Decimal = Field(default=Decimal(1), ge=1, le=125)
    # pre-trade checks
    max_open_positions: int = Field(default=3, ge=1)
    cooldown_after_stop_s: int = Field(default=900, ge=0)
    daily_loss_limit_pct: Decimal = Field(default=Decimal(3), gt=0, le=100)
    max_book_age_s: float = Field(default=10, gt=0)
    # trading state triggers
    reducing_drawdown_pct: Decimal = Field(default=Decimal(10), gt=0, lt=100)
    emergency_drawdown_pct: Decimal = Field(default=Decimal(20), gt=0, lt=100)
    daily_loss_halts: bool = False  # False: daily loss -> REDUCING until the next UTC day
    stale_data_s: float = Field(default=30, gt=0)
    error_storm_count: int = Field(default=10, ge=1)
    error_storm_window_s: float = Field(default=60, gt=0)
    auto_recover: bool = True  # REDUCING -> ACTIVE once its conditions clear (HALTED never)
    flatten_on_halt: bool = False
    # orders
    entry_order_type: Literal["MARKET", "LIMIT"] = "MARKET"
    client_id_prefix: str = Field(default="tl", pattern=r"^[A-Za-z0-9]{1,6}$")
    take_profit: tuple[TakeProfitLevel, ...] = (
        TakeProfitLevel(r_multiple=Decimal(1), fraction=Decimal("0.5")),
        TakeProfitLevel(r_multiple=Decimal(2), fraction=Decimal("0.5")),
    )
    trailing: TrailingConfig = TrailingConfig()
    dca: DcaConfig = DcaConfig()

    @model_validator(mode="after")
    def _consistent(self) -> RiskConfig:
        if self.emergency_drawdown_pct <= self.reducing_drawdown_pct:
            raise ValueError("emergency_drawdown_pct must be greater than reducing_drawdown_pct")
        if self.take_profit:
            total = sum((level.fraction for level in self.take_profit), Decimal(0))
            if total != 1:
                raise ValueError(f"take_profit fractions must sum to 1, not {total}")
            multiples = [level.r_multiple for level in self.take_profit]
            if multiples != sorted(set(multiples)):
                raise ValueError("take_profit r_multiples must be strictly increasing")
        return self
