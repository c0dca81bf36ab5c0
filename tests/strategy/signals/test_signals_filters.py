"""Market-context filters: funding, basis, sentiment; missing or stale inputs are neutral."""

from __future__ import annotations

import pytest

from engine.events import MarkPriceUpdated
from strategy.signals.config import (
    BasisFilterConfig,
    FiltersConfig,
    FundingFilterConfig,
    SentimentFilterConfig,
)
from strategy.signals.context import FundingSnapshot, MarketContext, Sentiment
from strategy.signals.filters import (
    basis_points,
    basis_verdict,
    blocking,
    evaluate_filters,
    funding_verdict,
    sentiment_verdict,
)
from strategy.signals.requests import PositionSide

LONG, SHORT = PositionSide.LONG, PositionSide.SHORT
NOW = 1_700_000_000_000
FUNDING = FundingFilterConfig(enabled=True)  # |rate| limit 0.0005, 120 s
BASIS = BasisFilterConfig(enabled=True)  # 30 bp either way, 60 s
SENTIMENT = SentimentFilterConfig(enabled=True, alt_long_max_dominance_pct=60.0)


def funding(rate: float, age_ms: int = 0) -> FundingSnapshot:
    return FundingSnapshot(rate, 100.0, NOW + 3_600_000, NOW - age_ms)


@pytest.mark.parametrize(
    "rate, long_ok, short_ok",
    [(0.0001, True, True), (0.0005, True, True), (0.0006, False, True), (-0.0006, True, False)],
)
def test_funding_blocks_the_side_that_pays_too_much(
    rate: float, long_ok: bool, short_ok: bool
) -> None:
    verdict = funding_verdict(funding(rate), NOW, FUNDING)
    assert (verdict.allow_long, verdict.allow_short, verdict.neutral) == (long_ok, short_ok, False)


def test_funding_without_fresh_data_is_neutral() -> None:
    for verdict in (funding_verdict(None, NOW, FUNDING),
                    funding_verdict(funding(0.01, age_ms=120_001), NOW, FUNDING)):
        assert (verdict.allow_long, verdict.allow_short, verdict.neutral) == (True, True, True)
    assert not funding_verdict(funding(0.01, age_ms=120_000), NOW, FUNDING).allow_long


def test_funding_snapshot_from_a_mark_price_event() -> None:
    event = MarkPriceUpdated("BTCUSDT", NOW, 0, 60_000.0, 59_990.0, 0.0001, NOW + 3_600_000)
    assert FundingSnapshot.from_mark_price(event) == FundingSnapshot(0.0001, 60_000.0,
                                                                     NOW + 3_600_000, NOW)


def test_basis_points_by_hand() -> None:
    assert basis_points(100.0, 100.5) == pytest.approx(50.0)
    assert basis_points(200.0, 199.0) == pytest.approx(-50.0)


@pytest.mark.parametrize(
    "futures, long_ok, short_ok",
    [(100.2, True, True), (100.31, False, True), (99.69, True, False)],
)
def test_basis_blocks_a_crowded_side(futures: float, long_ok: bool, short_ok: bool) -> None:
    verdict = basis_verdict(100.0, futures, NOW, NOW, BASIS)
    assert (verdict.allow_long, verdict.allow_short) == (long_ok, short_ok)


def test_basis_without_two_fresh_prices_is_neutral() -> None:
    assert basis_verdict(None, 101.0, NOW, NOW, BASIS).neutral
    assert basis_verdict(100.0, None, NOW, NOW, BASIS).neutral
    assert basis_verdict(100.0, 110.0, NOW - 61_000, NOW, BASIS).neutral
    assert basis_verdict(100.0, 110.0, None, NOW, BASIS).neutral


@pytest.mark.parametrize(
    "greed, long_ok, short_ok",
    [(50.0, True, True), (80.0, False, True), (20.0, True, False), (79.0, True, True)],
)
def test_fear_and_greed_extremes(greed: float, long_ok: bool, short_ok: bool) -> None:
    verdict = sentiment_verdict(Sentiment(fear_greed=greed), "BTCUSDT", SENTIMENT)
    assert (verdict.allow_long, verdict.allow_short) == (long_ok, short_ok)


def test_btc_dominance_blocks_altcoin_longs_only() -> None:
    heavy = Sentiment(btc_dominance_pct=61.0)
    assert not sentiment_verdict(heavy, "ETHUSDT", SENTIMENT).allow_long
    assert sentiment_verdict(heavy, "ETHUSDT", SENTIMENT).allow_short
    assert sentiment_verdict(heavy, "BTCUSDT", SENTIMENT).neutral
    assert sentiment_verdict(Sentiment(btc_dominance_pct=59.0), "ETHUSDT", SENTIMENT).allow_long


def test_unknown_sentiment_is_neutral() -> None:
    verdict = sentiment_verdict(Sentiment(), "ETHUSDT", SENTIMENT)
    assert (verdict.allow_long, verdict.allow_short, verdict.neutral) == (True, True, True)


def test_only_enabled_filters_have_a_say() -> None:
    crowded = MarketContext(funding=funding(0.01), spot_price=100.0, futures_price=101.0,
                            prices_ts_ms=NOW)
    greedy = Sentiment(fear_greed=95.0)
    assert evaluate_filters("BTCUSDT", crowded, greedy, NOW, FiltersConfig()) == ()
    cfg = FiltersConfig(funding=FUNDING, basis=BASIS, sentiment=SENTIMENT)
    verdicts = evaluate_filters("BTCUSDT", crowded, greedy, NOW, cfg)
    assert blocking(verdicts, LONG) == ("funding", "basis", "sentiment")
    assert blocking(verdicts, SHORT) == ()
