"""Sizing: risk budget over stop distance, strength multiplier, exposure cap; hand-computed."""

from __future__ import annotations

from decimal import Decimal as D
from fractions import Fraction

import pytest

from risk.sizing import position_size, strength_multiplier

BASE = {"equity": D(10000), "risk_pct": D(1), "max_position_pct": D(20), "leverage": D(1)}


def test_risk_budget_over_stop_distance() -> None:
    # 10000 x 1 % = 100 at risk; stop 100 away -> 1 unit; cap 10000 x 20 % / 100 = 20 units.
    s = position_size(price=D(100), stop_distance=D(100), strength=D(1), **BASE)
    assert (
        s.quantity == D(1) and s.risk_quantity == D(1) and s.cap_quantity == D(20) and not s.capped
    )


def test_strength_scales_the_size_between_half_and_full() -> None:
    # 100 at risk / stop 50 = 2 units, x 0.8 = 1.6.
    assert position_size(
        price=D(100), stop_distance=D(50), strength=D("0.8"), **BASE
    ).quantity == D("1.6")
    # below the floor: 0.3 -> 0.5 -> 1.0 unit; above the ceiling: 1.7 -> 1.0 -> 2 units.
    assert position_size(
        price=D(100), stop_distance=D(50), strength=D("0.3"), **BASE
    ).quantity == D("1.0")
    assert position_size(
        price=D(100), stop_distance=D(50), strength=D("1.7"), **BASE
    ).quantity == D("2.0")
    assert strength_multiplier(D("0.5")) == D("0.5") and strength_multiplier(D(0)) == D("0.5")


def test_exposure_cap_wins_when_the_stop_is_tight() -> None:
    # BTC at 20000, stop 40 away: risk size 100 / 40 = 2.5 BTC = 50000 USDT; cap 2000 / 20000 = 0.1.
    s = position_size(price=D(20000), stop_distance=D(40), strength=D(1), **BASE)
    assert s.capped and s.quantity == D("0.1") and s.risk_quantity == D("2.5")


def test_leverage_raises_the_cap() -> None:
    # cap = 10000 x 20 % x 5 / 20000 = 0.5 BTC; risk size 2.5 BTC still capped.
    s = position_size(
        price=D(20000), stop_distance=D(40), strength=D(1), **{**BASE, "leverage": D(5)}
    )
    assert s.quantity == D("0.5")


def test_exact_decimal_results() -> None:
    # 12345.67 x 0.75 % = 92.592525; / 3.3 = 28.0583409090...; x 0.9 = 25.25250681818...
    s = position_size(
        price=D("0.5"),
        stop_distance=D("3.3"),
        strength=D("0.9"),
        equity=D("12345.67"),
        risk_pct=D("0.75"),
        max_position_pct=D(100),
        leverage=D(1),
    )
    exact = Fraction("92.592525") / Fraction("3.3") * Fraction("0.9")
    assert abs(Fraction(s.quantity) - exact) < Fraction(1, 10**30)


@pytest.mark.parametrize("bad", [{"stop_distance": D(0)}, {"price": D(-1)}, {"equity": D(0)}])
def test_invalid_inputs_raise(bad: dict) -> None:
    kwargs = {**BASE, "price": D(100), "stop_distance": D(1), "strength": D(1), **bad}
    with pytest.raises(ValueError):
        position_size(**kwargs)
