"""Trade outcomes, simulated profit net of fees and threshold choice, worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd

from strategy.labels import ForwardLabel, HighLow2Label, TradeRule
from strategy.models.profit import (
    NO_TRADE_THRESHOLD,
    TradeOutcomes,
    choose_threshold,
    simulate_trades,
    trade_outcomes,
)


def arrays(close: list[float], high: list[float], low: list[float]) -> tuple[np.ndarray, ...]:
    return tuple(np.array(v, dtype=float) for v in (close, high, low))


def test_outcomes_take_profit_stop_timeout_and_unknown() -> None:
    close, high, low = arrays(
        close=[100, 100, 101, 99, 100, 100],
        high=[100, 100.5, 102.5, 99, 100, 100],
        low=[100, 99.5, 100, 97, 100, 100],
    )
    rule = TradeRule(side=1, take_profit_pct=2.0, stop_loss_pct=1.5, horizon_bars=2)
    out = trade_outcomes(close, high, low, rule)
    # t=0: bar 2 high 102.5 >= 102 -> +2 % at bar 2.   t=1: same bar 2 -> +2 %.
    # t=2: target 103.02 never; stop 99.485: bar 3 low 97 -> -1.5 % at bar 3.
    # t=3: target 100.98, stop 97.515: neither in bars 4-5 -> exit at close[5]: 100/99 - 1.
    # t=4, t=5: the window runs past the data -> unknown.
    np.testing.assert_array_equal(out.exit_row, [2, 2, 3, 5, -1, -1])
    np.testing.assert_allclose(out.gross_pct[:4], [2.0, 2.0, -1.5, (100 / 99 - 1) * 100])
    assert np.isnan(out.gross_pct[4:]).all()


def test_short_outcomes_mirror_long_ones() -> None:
    close, high, low = arrays(close=[100, 100, 100], high=[100, 100.2, 100], low=[100, 98.9, 100])
    out = trade_outcomes(close, high, low, TradeRule(-1, 1.0, None, 1))
    np.testing.assert_array_equal(out.exit_row, [1, 2, -1])
    np.testing.assert_allclose(out.gross_pct[:2], [1.0, 0.0])


def test_label_trade_rules() -> None:
    assert ForwardLabel(direction="down", horizon=30, threshold_pct=0.7).trade_rule() == TradeRule(
        -1, 0.7, None, 30
    )
    assert HighLow2Label(horizon=10, threshold_pct=2, tolerance=0.25).trade_rule() == TradeRule(
        1, 2, 0.5, 10
    )


def test_one_position_at_a_time_and_fees() -> None:
    outcomes = TradeOutcomes(
        exit_row=np.array([3, 2, 4, 5, 6, 7, -1, -1]),
        gross_pct=np.array([1.0, 5.0, -2.0, 0.5, 3.0, 1.0, np.nan, np.nan]),
    )
    scores = np.array([0.9, 0.9, 0.1, 0.9, 0.9, 0.2, 0.9, 0.9])
    stats = simulate_trades(scores, 0.5, outcomes, fee_pct=0.1)
    # Enter at 0 (busy until bar 3), skip 1, enter at 3 (until 5), skip 4, 6 and 7 unknown.
    assert stats.trades == 2
    assert stats.profit_pct == (1.0 - 0.2) + (0.5 - 0.2)
    assert stats.win_rate == 1.0
    per_row = np.array([0.95, 0.95, 0.95, 0.95, 0.3, 0.95, 0.95, 0.95])
    thresholds = np.array([0.99, 0.9, 0.9, 0.9, 0.2, 0.9, 0.9, 0.9])
    stats = simulate_trades(per_row, thresholds, outcomes, fee_pct=0.0)
    # 0 below its threshold; 1 (busy to 2), 2 (busy to 4), 4 (busy to 6); 6, 7 unknown.
    assert (stats.trades, stats.profit_pct) == (3, 5.0 - 2.0 + 3.0)


def test_threshold_maximises_profit_not_accuracy() -> None:
    # The 20 best-scored bars all rise (100 % precision) but by less than the fees; the next 20
    # rise by 1 %; the rest lose. Precision peaks at the top, profit net of fees lower down.
    n = 400
    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 0.5, n)
    gross = np.full(n, -0.3)
    scores[300:320], gross[300:320] = np.linspace(0.80, 0.89, 20), 1.0
    scores[380:400], gross[380:400] = np.linspace(0.90, 0.99, 20), 0.08
    outcomes = TradeOutcomes(np.arange(n) + 1, gross)
    choice = choose_threshold(scores, outcomes, fee_pct=0.05, candidates=400, min_trades=5)
    assert 0.5 < choice.threshold <= 0.80
    assert choice.stats.trades == 40
    assert abs(choice.stats.profit_pct - (20 * 0.9 + 20 * (0.08 - 0.1))) < 1e-9
    top_only = simulate_trades(scores, 0.9, outcomes, fee_pct=0.05)
    assert top_only.trades == 20 and top_only.profit_pct < 0


def test_no_profitable_threshold_means_never_trade() -> None:
    scores = np.linspace(0, 1, 200)
    outcomes = TradeOutcomes(np.minimum(np.arange(200) + 1, 199), np.full(200, 0.05))
    choice = choose_threshold(scores, outcomes, fee_pct=0.05, candidates=50)
    assert choice.threshold == NO_TRADE_THRESHOLD and choice.stats.trades == 0
    assert (choice.profits_pct <= 0).all()


def test_outcomes_on_real_klines_agree_with_a_loop(fil_candles: pd.DataFrame) -> None:
    frame = fil_candles.iloc[:3000]
    close, high, low = (frame[c].to_numpy() for c in ("close", "high", "low"))
    rule = TradeRule(1, 0.4, 0.3, 20)
    out = trade_outcomes(close, high, low, rule)
    for t in range(0, 2980, 7):
        tp, sl = close[t] * 1.004, close[t] * 0.997
        exit_row, gross = t + 20, (close[t + 20] / close[t] - 1) * 100
        for j in range(t + 1, t + 21):
            if low[j] <= sl:
                exit_row, gross = j, -0.3
                break
            if high[j] >= tp:
                exit_row, gross = j, 0.4
                break
        assert out.exit_row[t] == exit_row
        assert abs(out.gross_pct[t] - gross) < 1e-12
