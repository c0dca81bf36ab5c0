"""Performance metrics from an equity curve and closed round trips (definitions: docs/portfolio.md).

Curve metrics use simple returns between consecutive samples, r_i = E_i / E_(i-1) - 1, and
annualise with the curve's own sampling: one period is the median spacing of its timestamps and a
year is 365 days (crypto trades every day). Risk-free rate 0. A metric that is undefined for the
input (too few samples, zero deviation, no trades) is None; profit factor with wins and no losses
is +inf.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from portfolio.portfolio import EquityPoint
from portfolio.position import ClosedTrade

YEAR_MS = 365 * 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class Metrics:
    start_ms: int
    end_ms: int
    start_equity: float
    end_equity: float
    period_ms: int | None  # median sample spacing
    total_return: float | None  # fraction: 0.05 = +5 %
    apr: float | None  # total_return scaled to a year, not compounded
    cagr: float | None  # compounded annual growth rate
    sharpe: float | None
    sortino: float | None
    calmar: float | None  # cagr / max_drawdown
    max_drawdown: float  # fraction of the running peak, >= 0
    max_drawdown_duration_ms: int  # longest time below a previous peak
    exposure: float | None  # fraction of the time with an open position
    avg_gross_exposure: float | None  # time-weighted gross exposure / equity
    trades: int
    win_rate: float | None  # fraction of round trips with pnl > 0
    profit_factor: float | None  # gross profit / gross loss
    expectancy: float | None  # mean net pnl per round trip, valuation asset
    avg_win: float | None
    avg_loss: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def returns_of(equity: Sequence[float]) -> list[float]:
    """Return simple returns between consecutive equity samples."""
    return [b / a - 1 for a, b in itertools.pairwise(equity) if a != 0]


def max_drawdown(points: Sequence[EquityPoint]) -> tuple[float, int]:
    """Return (largest fall from a running peak as a fraction, longest time under water in ms).

    Time under water runs from a peak to the first sample back at or above it (or to the last
    sample when it never recovers).
    """
    peak = -math.inf
    peak_ms = 0
    worst = 0.0
    longest = 0
    under = False
    for p in points:
        if p.equity >= peak:
            if under:
                longest = max(longest, p.ts_ms - peak_ms)
                under = False
            peak, peak_ms = p.equity, p.ts_ms
        else:
            under = True
            if peak > 0:
                worst = max(worst, 1 - p.equity / peak)
    if under:
        longest = max(longest, points[-1].ts_ms - peak_ms)
    return worst, longest


def _period_ms(points: Sequence[EquityPoint]) -> int | None:
    gaps = [b.ts_ms - a.ts_ms for a, b in itertools.pairwise(points) if b.ts_ms > a.ts_ms]
    return int(statistics.median(gaps)) if gaps else None


def _exposure(points: Sequence[EquityPoint]) -> tuple[float | None, float | None]:
    """Return (time share in market, time-weighted gross exposure / equity) over the intervals."""
    duration = points[-1].ts_ms - points[0].ts_ms if points else 0
    if duration <= 0:
        return None, None
    in_market = weighted = 0.0
    for a, b in itertools.pairwise(points):
        dt = b.ts_ms - a.ts_ms
        if a.gross_exposure > 0:
            in_market += dt
        if a.equity > 0:
            weighted += dt * a.gross_exposure / a.equity
    return in_market / duration, weighted / duration


def _trade_stats(trades: Sequence[ClosedTrade]) -> dict[str, float | None]:
    if not trades:
        return {
            "win_rate": None,
            "profit_factor": None,
            "expectancy": None,
            "avg_win": None,
            "avg_loss": None,
        }
    pnls = [float(t.pnl) for t in trades]
    wins = [p for p in pnls if p > 0]
    losses = [p for p in pnls if p < 0]
    gross_win, gross_loss = sum(wins), -sum(losses)
    if gross_loss > 0:
        profit_factor: float | None = gross_win / gross_loss
    else:
        profit_factor = math.inf if gross_win > 0 else None
    return {
        "win_rate": len(wins) / len(pnls),
        "profit_factor": profit_factor,
        "expectancy": sum(pnls) / len(pnls),
        "avg_win": sum(wins) / len(wins) if wins else None,
        "avg_loss": sum(losses) / len(losses) if losses else None,
    }


def compute_metrics(points: Sequence[EquityPoint], trades: Sequence[ClosedTrade] = ()) -> Metrics:
    """Compute every metric of a run from its equity samples (time order) and round trips."""
    if not points:
        raise ValueError("an equity curve needs at least one point")
    first, last = points[0], points[-1]
    duration = last.ts_ms - first.ts_ms
    period = _period_ms(points)
    total = last.equity / first.equity - 1 if first.equity > 0 else None
    apr = cagr = None
    if total is not None and duration > 0:
        apr = total * YEAR_MS / duration
        growth = last.equity / first.equity
        cagr = growth ** (YEAR_MS / duration) - 1 if growth > 0 else -1.0
    rets = returns_of([p.equity for p in points])
    sharpe = sortino = None
    if period and len(rets) >= 2:
        scale = math.sqrt(YEAR_MS / period)
        mean = statistics.fmean(rets)
        stdev = statistics.stdev(rets)
        sharpe = mean / stdev * scale if stdev > 0 else None
        downside = math.sqrt(sum(min(r, 0.0) ** 2 for r in rets) / len(rets))
        sortino = mean / downside * scale if downside > 0 else None
    drawdown, drawdown_ms = max_drawdown(points)
    calmar = cagr / drawdown if cagr is not None and drawdown > 0 else None
    exposure, avg_gross = _exposure(points)
    stats = _trade_stats(trades)
    return Metrics(
        start_ms=first.ts_ms,
        end_ms=last.ts_ms,
        start_equity=first.equity,
        end_equity=last.equity,
        period_ms=period,
        total_return=total,
        apr=apr,
        cagr=cagr,
        sharpe=sharpe,
        sortino=sortino,
        calmar=calmar,
        max_drawdown=drawdown,
        max_drawdown_duration_ms=drawdown_ms,
        exposure=exposure,
        avg_gross_exposure=avg_gross,
        trades=len(trades),
        win_rate=stats["win_rate"],
        profit_factor=stats["profit_factor"],
        expectancy=stats["expectancy"],
        avg_win=stats["avg_win"],
        avg_loss=stats["avg_loss"],
    )
