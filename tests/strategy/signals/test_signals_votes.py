"""Vote arithmetic worked by hand, and the strategy config (defaults, merging, errors)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from strategy.signals.config import StrategyConfig, VoteConfig
from strategy.signals.votes import SIGNAL_NAMES, Regime, Vote, combine_votes


def test_weighted_vote_by_hand() -> None:
    votes = [Vote("a", 1, 1.0), Vote("b", -1, 0.5), Vote("c", 0, 0.0)]
    weights = {"a": 2.0, "b": 1.0, "c": 1.0}
    multipliers = {"a": 1.5, "b": 1.0, "c": 0.5}
    # effective weights 3, 1, 0.5 (sum 4.5); numerator 3*1 - 1*0.5 = 2.5
    tally = combine_votes(votes, weights, multipliers, Regime.TREND)
    assert tally.confidence == pytest.approx(5 / 9)
    assert dict(tally.contributions) == pytest.approx({"a": 2 / 3, "b": -1 / 9, "c": 0.0})
    assert tally.regime is Regime.TREND


def test_unanimous_full_strength_is_one_and_abstentions_dilute() -> None:
    ones = {n: 1.0 for n in "abcd"}
    full = combine_votes([Vote(n, -1, 1.0) for n in "abcd"], ones, ones, Regime.FLAT)
    assert full.confidence == -1.0
    half = combine_votes([Vote("a", 1, 1.0), Vote("b", 1, 1.0), Vote.abstain("c"),
                          Vote.abstain("d")], ones, ones, Regime.FLAT)
    assert half.confidence == pytest.approx(0.5)


def test_zero_weights_give_zero_confidence() -> None:
    zero = {"a": 0.0}
    assert combine_votes([Vote("a", 1, 1.0)], zero, {"a": 1.0}, Regime.FLAT).confidence == 0.0


def test_vote_validation() -> None:
    with pytest.raises(ValueError):
        Vote("x", 2, 0.5)
    with pytest.raises(ValueError):
        Vote("x", 1, 1.5)
    with pytest.raises(ValueError):
        Vote("x", 0, 0.5)
    assert Vote.of("x", 1, 3.0).strength == 1.0
    assert Vote.of("x", 1, float("nan")) == Vote.abstain("x")


def test_default_config_has_every_signal_and_regime() -> None:
    vote = StrategyConfig().vote
    assert set(vote.weights) == set(SIGNAL_NAMES)
    assert set(vote.multipliers) == set(Regime)
    assert all(set(m) == set(SIGNAL_NAMES) for m in vote.multipliers.values())
    # mean-reverting signals lead in a flat market, trend-following ones in a trend
    flat, trend = vote.multipliers[Regime.FLAT], vote.multipliers[Regime.TREND]
    assert flat["rsi_reversion"] > trend["rsi_reversion"]
    assert trend["breakout_retest"] > flat["breakout_retest"]


def test_partial_weights_and_multipliers_merge_over_defaults() -> None:
    cfg = StrategyConfig.model_validate(
        {"vote": {"weights": {"cvd": 2.5}, "multipliers": {"flat": {"poc": 3.0}}}}
    )
    default = VoteConfig()
    assert cfg.vote.weights["cvd"] == 2.5
    assert cfg.vote.weights["poc"] == default.weights["poc"]
    assert cfg.vote.multipliers[Regime.FLAT]["poc"] == 3.0
    assert cfg.vote.multipliers[Regime.FLAT]["cvd"] == default.multipliers[Regime.FLAT]["cvd"]
    assert cfg.vote.multipliers[Regime.TREND] == default.multipliers[Regime.TREND]


@pytest.mark.parametrize(
    "section, path",
    [
        ({"vote": {"weights": {"rsi": 1.0}}}, "vote.weights.rsi"),
        ({"vote": {"multipliers": {"sideways": {}}}}, "vote.multipliers.sideways"),
        ({"vote": {"weights": {"cvd": -1.0}}}, "vote.weights"),
        ({"vote": {"threshold": 0}}, "vote.threshold"),
        ({"vote": {"signals": {"ema_pinch": {"fast": 30}}}}, "vote.signals.ema_pinch"),
        ({"vote": {"window_candles": 100}}, "vote"),
        ({"vote": {"tresh": 0.3}}, "vote.tresh"),
        ({"model": {"thresholds": {"btc-usd": 0.5}}}, "model.thresholds"),
        ({"model": {"thresholds": {"BTCUSDT": 1.5}}}, "model.thresholds"),
        ({"exits": {"take_profits": [{"pct": 1, "fraction": 0.7}, {"pct": 2, "fraction": 0.7}]}},
         "exits.take_profits"),
        ({"kind": "ml"}, "kind"),
        ({"exits": {"stop_loss_pct": None}}, "exits"),
    ],
)
def test_config_errors_name_their_path(section: dict, path: str) -> None:
    with pytest.raises(ValidationError) as info:
        StrategyConfig.model_validate(section)
    locations = [".".join(str(p) for p in e["loc"]) for e in info.value.errors()]
    assert any(loc.startswith(path) for loc in locations), locations


def test_config_is_frozen() -> None:
    cfg = StrategyConfig()
    with pytest.raises(ValidationError):
        cfg.kind = "vote"  # type: ignore[misc]


def test_docs_define_every_signal_with_its_look_back() -> None:
    """docs/strategies.md has one table row per signal whose last cell ends in its look-back."""
    import re
    from pathlib import Path

    from strategy.signals.params import SignalParams

    doc = (Path(__file__).resolve().parents[3] / "docs" / "strategies.md").read_text()
    row = re.compile(r"^\| \d+ \| `(\w+)` \|(.*)\|$", re.MULTILINE)
    rows = {m.group(1): m.group(2) for m in row.finditer(doc)}
    assert set(rows) == set(SIGNAL_NAMES)
    params = SignalParams()
    for name, row in rows.items():
        look_back = int(re.findall(r"\d+", row.split("|")[-1])[-1])
        assert look_back == getattr(params, name).lookback, name
    assert f"confidence >= threshold` ({VoteConfig().threshold})" in doc
