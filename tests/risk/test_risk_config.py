"""RiskConfig: defaults named in the issue, frozen, extra keys refused, cross-field rules."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from pydantic import ValidationError

from risk.config import RiskConfig


def test_defaults() -> None:
    c = RiskConfig()
    assert (c.risk_pct, c.max_position_pct, c.leverage, c.max_open_positions) == (
        D(1),
        D(20),
        D(1),
        3,
    )
    assert (c.cooldown_after_stop_s, c.daily_loss_limit_pct) == (900, D(3))
    assert (c.reducing_drawdown_pct, c.emergency_drawdown_pct, c.stale_data_s) == (D(10), D(20), 30)
    assert (c.error_storm_count, c.error_storm_window_s, c.flatten_on_halt) == (10, 60, False)
    assert [(lvl.r_multiple, lvl.fraction) for lvl in c.take_profit] == [
        (D(1), D("0.5")),
        (D(2), D("0.5")),
    ]
    assert c.trailing.break_even_after_first_target and not c.dca.enabled


def test_yaml_numbers_become_exact_decimals() -> None:
    c = RiskConfig.model_validate(
        {"risk_pct": 0.1, "take_profit": [{"r_multiple": 1.5, "fraction": 1}]}
    )
    assert c.risk_pct == D("0.1") and c.take_profit[0].r_multiple == D("1.5")


@pytest.mark.parametrize(
    "bad",
    [
        {"risk_pct": 0},
        {"max_position_pct": -1},
        {"unknown_key": 1},
        {"leverage": 0.5},
        {"reducing_drawdown_pct": 20, "emergency_drawdown_pct": 15},
        {"take_profit": [{"r_multiple": 1, "fraction": 0.5}]},
        {"take_profit": [{"r_multiple": 2, "fraction": 0.5}, {"r_multiple": 1, "fraction": 0.5}]},
        {"client_id_prefix": "way-too-long"},
        {"trailing": {"callback_rate_pct": 11}},
    ],
)
def test_invalid_values_are_refused(bad: dict) -> None:
    with pytest.raises(ValidationError):
        RiskConfig.model_validate(bad)


def test_frozen() -> None:
    with pytest.raises(ValidationError):
        RiskConfig().risk_pct = D(5)  # type: ignore[misc]
