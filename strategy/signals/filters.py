"""Market-context filters: pure verdicts that may veto a long or a short entry.

Each filter is optional (`strategy.filters.<name>.enabled`) and only ever blocks entries; it
never opens or closes a position. With no data, stale data or an unreachable source a filter is
*neutral* (allows both sides) and says why in its note, so a missing input never stops trading.

* funding: a positive funding rate means longs pay shorts. No long while the rate is above
  `max_long_rate`, no short while it is below `-max_short_rate` (from markPrice events).
* basis: `basis_bp = (futures - spot) / spot * 1e4`. No long while futures trade at a premium
  above `max_premium_bp` (crowded longs), no short at a discount beyond `max_discount_bp`.
* sentiment: no long at Fear & Greed >= `extreme_greed`, no short at <= `extreme_fear`; on a
  symbol other than BTC*, no long while BTC dominance >= `alt_long_max_dominance_pct`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from strategy.signals.config import (
    BasisFilterConfig,
    FiltersConfig,
    FundingFilterConfig,
    SentimentFilterConfig,
)
from strategy.signals.context import FundingSnapshot, MarketContext, Sentiment
from strategy.signals.requests import PositionSide


@dataclass(frozen=True, slots=True)
class FilterVerdict:
    """One filter's say on new entries of a symbol."""

    name: str
    allow_long: bool = True
    allow_short: bool = True
    neutral: bool = True  # no opinion: disabled, no data or stale data
    note: str = ""

    def allows(self, side: PositionSide) -> bool:
        return self.allow_long if side is PositionSide.LONG else self.allow_short


def funding_verdict(
    funding: FundingSnapshot | None, now_ms: int, cfg: FundingFilterConfig
) -> FilterVerdict:
    """Judge entries by the latest funding rate; neutral without a fresh markPrice."""
    if funding is None:
        return FilterVerdict("funding", note="no funding rate yet")
    if now_ms - funding.ts_ms > cfg.max_age_s * 1000:
        age_s = (now_ms - funding.ts_ms) // 1000
        return FilterVerdict("funding", note=f"funding rate is {age_s} s old")
    rate = funding.rate
    allow_long = rate <= cfg.max_long_rate
    allow_short = rate >= -cfg.max_short_rate
    return FilterVerdict("funding", allow_long, allow_short, neutral=False, note=f"rate={rate:.6f}")


def basis_verdict(
    spot_price: float | None,
    futures_price: float | None,
    prices_ts_ms: int | None,
    now_ms: int,
    cfg: BasisFilterConfig,
) -> FilterVerdict:
    """Judge entries by the futures premium over spot; neutral without two fresh prices."""
    if not (spot_price and futures_price and spot_price > 0 and futures_price > 0):
        return FilterVerdict("basis", note="spot or futures price unknown")
    if prices_ts_ms is None or now_ms - prices_ts_ms > cfg.max_age_s * 1000:
        return FilterVerdict("basis", note="prices are stale")
    basis_bp = basis_points(spot_price, futures_price)
    allow_long = basis_bp <= cfg.max_premium_bp
    allow_short = basis_bp >= -cfg.max_discount_bp
    note = f"basis={basis_bp:.1f}bp"
    return FilterVerdict("basis", allow_long, allow_short, neutral=False, note=note)


def basis_points(spot_price: float, futures_price: float) -> float:
    """Return the futures premium over spot in basis points of the spot price."""
    return (futures_price - spot_price) / spot_price * 1e4


def sentiment_verdict(
    sentiment: Sentiment, symbol: str, cfg: SentimentFilterConfig
) -> FilterVerdict:
    """Judge entries by Fear & Greed and BTC dominance; each missing input is neutral."""
    allow_long = allow_short = True
    notes: list[str] = []
    greed = sentiment.fear_greed
    if greed is not None:
        allow_long = greed < cfg.extreme_greed
        allow_short = greed > cfg.extreme_fear
        notes.append(f"fear_greed={greed:g}")
    dominance = sentiment.btc_dominance_pct
    limit = cfg.alt_long_max_dominance_pct
    if dominance is not None and limit is not None and not symbol.startswith("BTC"):
        allow_long = allow_long and dominance < limit
        notes.append(f"btc_dominance={dominance:g}%")
    if not notes:
        return FilterVerdict("sentiment", note="no sentiment data")
    return FilterVerdict("sentiment", allow_long, allow_short, neutral=False, note=" ".join(notes))


def evaluate_filters(
    symbol: str, market: MarketContext, sentiment: Sentiment, now_ms: int, cfg: FiltersConfig
) -> tuple[FilterVerdict, ...]:
    """Return the verdict of every enabled filter for an entry on `symbol` at `now_ms`."""
    verdicts: list[FilterVerdict] = []
    if cfg.funding.enabled:
        verdicts.append(funding_verdict(market.funding, now_ms, cfg.funding))
    if cfg.basis.enabled:
        verdicts.append(basis_verdict(market.spot_price, market.futures_price, market.prices_ts_ms,
                                      now_ms, cfg.basis))
    if cfg.sentiment.enabled:
        verdicts.append(sentiment_verdict(sentiment, symbol, cfg.sentiment))
    return tuple(verdicts)


def blocking(verdicts: Iterable[FilterVerdict], side: PositionSide) -> tuple[str, ...]:
    """Return the names of the filters that forbid an entry on `side` (empty: allowed)."""
    return tuple(v.name for v in verdicts if not v.allows(side))
