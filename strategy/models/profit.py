"""Simulated trading profit net of fees, and the threshold that maximises it.

Every bar has the outcome of the trade its label stands for (strategy.labels.TradeRule): enter
at the bar's close, leave at the take-profit, the stop (a bar touching both counts as the stop:
one-minute bars do not tell the order) or the close `horizon` bars later. A threshold trades
every bar whose score reaches it, one position at a time (a signal while a trade is open is
skipped), and pays `fee_pct` on entry and on exit. Profit is the sum of the trades' net returns
in percent of the stake (no compounding), which is what a per-coin threshold should maximise,
not accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from strategy.labels import TradeRule, first_crossings


@dataclass(frozen=True, slots=True)
class TradeOutcomes:
    """Per bar: the bar the trade entered there exits on (-1: unknown) and its gross return %."""

    exit_row: np.ndarray
    gross_pct: np.ndarray

    def take(self, rows: np.ndarray) -> TradeOutcomes:
        """Select bars, re-basing exit rows onto the selection's positions."""
        exit_row = self.exit_row[rows]
        known = exit_row >= 0
        position = np.searchsorted(rows, np.where(known, exit_row, 0))
        return TradeOutcomes(np.where(known, position, -1), self.gross_pct[rows])


@dataclass(frozen=True, slots=True)
class TradeStats:
    """What trading the signals did."""

    trades: int
    profit_pct: float  # sum of net returns, percent of stake
    win_rate: float
    mean_net_pct: float


@dataclass(frozen=True, slots=True)
class ThresholdChoice:
    """The chosen threshold, what it earned on validation, and the whole profit curve."""

    threshold: float
    stats: TradeStats
    candidates: np.ndarray
    profits_pct: np.ndarray
    trades: np.ndarray


NO_TRADE_THRESHOLD = 1.0 + 1e-9  # above every probability: the model never trades


def trade_outcomes(
    close: np.ndarray, high: np.ndarray, low: np.ndarray, rule: TradeRule
) -> TradeOutcomes:
    """Compute the exit bar and gross return (%) of the rule's trade entered at every bar."""
    n = len(close)
    hit, adverse, decided = first_crossings(
        close, high, low, rule.horizon_bars, rule.side, rule.take_profit_pct, rule.stop_loss_pct
    )
    rows = np.arange(n)
    stopped = (adverse >= 0) & ((hit < 0) | (adverse <= hit))
    won = (hit >= 0) & ~stopped
    timeout = decided & ~won & ~stopped
    exit_row = np.full(n, -1, dtype=np.int64)
    gross = np.full(n, np.nan)
    exit_row[won] = rows[won] + hit[won]
    gross[won] = rule.take_profit_pct
    if rule.stop_loss_pct is not None:
        exit_row[stopped] = rows[stopped] + adverse[stopped]
        gross[stopped] = -rule.stop_loss_pct
    last = rows[timeout] + rule.horizon_bars
    exit_row[timeout] = last
    gross[timeout] = rule.side * (close[last] / close[rows[timeout]] - 1.0) * 100.0
    undecided = ~decided
    exit_row[undecided] = -1
    gross[undecided] = np.nan
    return TradeOutcomes(exit_row, gross)


def simulate_trades(
    scores: np.ndarray,
    threshold: float | np.ndarray,
    outcomes: TradeOutcomes,
    fee_pct: float,
) -> TradeStats:
    """Trade every bar whose score reaches the threshold, one position at a time."""
    signal = (scores >= threshold) & (outcomes.exit_row >= 0)
    candidates = np.flatnonzero(signal)
    net: list[float] = []
    position = 0
    while position < len(candidates):
        row = candidates[position]
        net.append(float(outcomes.gross_pct[row]) - 2.0 * fee_pct)
        # A trade exiting during bar e (always after its entry bar) leaves e's close free.
        next_free = max(int(outcomes.exit_row[row]), row + 1)
        position = int(np.searchsorted(candidates, next_free, side="left"))
    if not net:
        return TradeStats(0, 0.0, 0.0, 0.0)
    values = np.array(net)
    return TradeStats(
        len(values), float(values.sum()), float((values > 0).mean()), float(values.mean())
    )


def choose_threshold(
    scores: np.ndarray,
    outcomes: TradeOutcomes,
    fee_pct: float,
    candidates: int = 200,
    min_trades: int = 5,
) -> ThresholdChoice:
    """Pick the score threshold with the highest simulated profit net of fees (never below 0).

    Candidates are quantiles of the scores from the median up. When no candidate with at least
    `min_trades` trades makes money, the threshold is NO_TRADE_THRESHOLD: not trading beats
    losing.
    """
    known = scores[np.isfinite(scores)]
    if known.size == 0:
        grid = np.array([NO_TRADE_THRESHOLD])
    else:
        grid = np.unique(np.quantile(known, np.linspace(0.5, 1.0, candidates, endpoint=False)))
    profits = np.zeros(len(grid))
    trades = np.zeros(len(grid), dtype=np.int64)
    best = (NO_TRADE_THRESHOLD, TradeStats(0, 0.0, 0.0, 0.0))
    for i, threshold in enumerate(grid):
        stats = simulate_trades(scores, threshold, outcomes, fee_pct)
        profits[i], trades[i] = stats.profit_pct, stats.trades
        if stats.trades >= min_trades and stats.profit_pct > best[1].profit_pct:
            best = (float(threshold), stats)
    return ThresholdChoice(best[0], best[1], grid, profits, trades)
