"""Metrics on hand-built curves; expected values worked out by hand (docs/portfolio.md)."""

from __future__ import annotations

import math
from decimal import Decimal as D

import pytest

from engine.model import Side
from portfolio.metrics import compute_metrics, max_drawdown
from portfolio.portfolio import EquityPoint
from portfolio.position import ClosedTrade

DAY = 86_400_000


def curve(equities, exposures=None):
    exposures = exposures or [0.0] * len(equities)
    return [
        EquityPoint(i * DAY, e, x) for i, (e, x) in enumerate(zip(equities, exposures, strict=True))
    ]


def trade(pnl: str) -> ClosedTrade:
    return ClosedTrade("BTCUSDT", Side.BUY, 0, 1, D(1), D(100), D(100), D(pnl), D(0), D(0))


def test_daily_curve_every_metric():
    # returns +10 %, -10 %, +10 %, +10 %: mean 0.05, sample stdev 0.1, downside dev sqrt(0.01/4)
    points = curve([100, 110, 99, 108.9, 119.79], [0, 50, 50, 0, 0])
    m = compute_metrics(points, [trade("10"), trade("-5"), trade("20"), trade("0")])
    assert m.period_ms == DAY
    assert m.total_return == pytest.approx(0.1979)
    assert m.apr == pytest.approx(0.1979 * 365 / 4)
    assert m.cagr == pytest.approx(1.1979 ** (365 / 4) - 1)
    assert m.sharpe == pytest.approx(0.05 / 0.1 * math.sqrt(365))
    assert m.sortino == pytest.approx(0.05 / 0.05 * math.sqrt(365))
    assert m.max_drawdown == pytest.approx(0.1)  # 110 -> 99
    assert m.max_drawdown_duration_ms == 3 * DAY  # from the 110 peak to 119.79 on day 4
    assert m.calmar == pytest.approx((1.1979 ** (365 / 4) - 1) / 0.1)
    assert m.exposure == pytest.approx(0.5)
    assert m.avg_gross_exposure == pytest.approx((50 / 110 + 50 / 99) / 4)
    assert (m.trades, m.win_rate, m.profit_factor, m.expectancy) == (4, 0.5, 6.0, 6.25)
    assert (m.avg_win, m.avg_loss) == (15.0, -5.0)


def test_hourly_sampling_annualises_with_hours():
    hour = 3_600_000
    points = [EquityPoint(i * hour, e, 0.0) for i, e in enumerate([100, 101, 100, 102])]
    rets = [0.01, 100 / 101 - 1, 0.02]
    mean = sum(rets) / 3
    stdev = math.sqrt(sum((r - mean) ** 2 for r in rets) / 2)
    m = compute_metrics(points)
    assert m.sharpe == pytest.approx(mean / stdev * math.sqrt(365 * 24))
    assert m.apr == pytest.approx(0.02 * 365 * 24 / 3)


def test_undefined_metrics_are_none_and_no_loss_profit_factor_is_infinite():
    flat = compute_metrics(curve([100, 100, 100]), [])
    assert flat.sharpe is None and flat.sortino is None and flat.calmar is None
    assert flat.win_rate is None and flat.profit_factor is None and flat.expectancy is None
    rising = compute_metrics(curve([100, 101, 103]), [trade("1"), trade("2")])
    assert rising.sortino is None and rising.max_drawdown == 0 and rising.profit_factor == math.inf
    single = compute_metrics(curve([100]))
    assert single.apr is None and single.exposure is None and single.total_return == 0
    with pytest.raises(ValueError):
        compute_metrics([])


def test_drawdown_never_recovered_runs_to_the_end():
    worst, duration = max_drawdown(curve([100, 120, 90, 100, 60, 80]))
    assert worst == pytest.approx(0.5)  # 120 -> 60
    assert duration == 4 * DAY
