"""The model strategy: per-coin thresholds, confirmation delay, exits, spot long-only, futures."""

from __future__ import annotations

from decimal import Decimal

import pytest
from signals_candles import candles, ring_of, wilder_atr

from engine.model import Market
from strategy.signals import (
    EnterRequest,
    ExitReason,
    ExitRequest,
    MarketContext,
    ModelStrategy,
    PositionClosed,
    PositionOpened,
    PositionSide,
    PositionView,
    RowClosed,
    ScoreUpdated,
    StrategyConfig,
    StrategyContext,
    TakeProfitLevel,
)
from strategy.signals.context import FundingSnapshot

SYMBOL = "BTCUSDT"
RING = ring_of(candles([100.0]))
CONTRIBUTIONS = (("rsi", 0.4), ("book_imbalance_30bp", -0.1))


def ctx(now_ms: int, position: PositionView | None = None, **extra: object) -> StrategyContext:
    return StrategyContext(
        now_ms=now_ms, equity=Decimal(1000), candles={SYMBOL: RING, "ETHUSDT": RING},
        positions={SYMBOL: position} if position else {}, **extra,  # type: ignore[arg-type]
    )


def score(ts_ms: int, confidence: float, threshold: float = 0.6, symbol: str = SYMBOL,
          **extra: float | None) -> ScoreUpdated:
    return ScoreUpdated(symbol, confidence, threshold, CONTRIBUTIONS, ts_ms, **extra)  # type: ignore[arg-type]


def config(**model: object) -> StrategyConfig:
    return StrategyConfig.model_validate({"kind": "model", "model": model})


def long_position(entry_ts_ms: int = 0) -> PositionView:
    return PositionView(PositionSide.LONG, Decimal("0.01"), Decimal(100), entry_ts_ms, 0.0)


def test_enters_long_at_the_threshold_with_the_configured_protection() -> None:
    strategy = ModelStrategy(config(), Market.SPOT)
    assert strategy.on_event(score(1000, 0.59), ctx(1000)) == []
    [request] = strategy.on_event(score(2000, 0.6), ctx(2000))
    assert request == EnterRequest(
        symbol=SYMBOL, side=PositionSide.LONG, strength=0.6, reference_price=Decimal("100.0"),
        equity_fraction=0.1, stop_distance=Decimal("1.0"),  # 1 % of 100
        take_profits=(TakeProfitLevel(Decimal("1.5"), Decimal("1.0")),),  # 1.5 %, all of it
        trailing_stop_pct=None, reason="model", confidence=0.6, threshold=0.6,
        contributions=CONTRIBUTIONS, ts_ms=2000,
    )


def test_per_coin_threshold_overrides_the_bundle() -> None:
    strategy = ModelStrategy(config(thresholds={SYMBOL: 0.7}), Market.SPOT)
    assert strategy.on_event(score(1000, 0.65), ctx(1000)) == []
    [request] = strategy.on_event(score(1000, 0.65, symbol="ETHUSDT"), ctx(1000))
    assert (request.symbol, request.threshold) == ("ETHUSDT", 0.6)  # type: ignore[union-attr]
    [request] = strategy.on_event(score(2000, 0.7), ctx(2000))
    assert request.threshold == 0.7  # type: ignore[union-attr]


def test_confirmation_delay_counts_exchange_seconds_and_restarts_on_a_dip() -> None:
    strategy = ModelStrategy(config(confirm_s=5), Market.SPOT)
    fired = {ts: strategy.on_event(score(ts, 0.8), ctx(ts)) for ts in range(1000, 6000, 1000)}
    assert all(r == [] for r in fired.values())  # above since 1000; 4 s so far
    assert len(strategy.on_event(score(6000, 0.8), ctx(6000))) == 1  # 5 s of exchange time

    strategy = ModelStrategy(config(confirm_s=5), Market.SPOT)
    for ts in (1000, 2000):
        assert strategy.on_event(score(ts, 0.8), ctx(ts)) == []
    assert strategy.on_event(score(3000, 0.5), ctx(3000)) == []  # dip: start again
    for ts in range(4000, 9000, 1000):
        assert strategy.on_event(score(ts, 0.8), ctx(ts)) == []
    assert len(strategy.on_event(score(9000, 0.8), ctx(9000))) == 1


def test_one_request_per_decision_until_the_cooldown_passes() -> None:
    cfg = StrategyConfig.model_validate({"kind": "model", "entry": {"cooldown_s": 60}})
    strategy = ModelStrategy(cfg, Market.SPOT)
    assert len(strategy.on_event(score(0, 0.9), ctx(0))) == 1
    assert strategy.on_event(score(59_000, 0.9), ctx(59_000)) == []
    assert len(strategy.on_event(score(60_000, 0.9), ctx(60_000))) == 1  # entry never filled
    strategy.on_event(PositionOpened(SYMBOL, PositionSide.LONG, Decimal(1), Decimal(100), 61_000),
                      ctx(61_000))
    strategy.on_event(PositionClosed(SYMBOL, 70_000), ctx(70_000))
    assert strategy.on_event(score(129_000, 0.9), ctx(129_000)) == []  # cooldown after the close
    assert len(strategy.on_event(score(130_000, 0.9), ctx(130_000))) == 1


def test_exit_when_confidence_falls_below_the_exit_level() -> None:
    strategy = ModelStrategy(config(), Market.SPOT)  # exit below 0.5 * threshold = 0.3
    position = long_position()
    assert strategy.on_event(score(1000, 0.31), ctx(1000, position)) == []
    assert strategy.on_event(score(2000, 0.29), ctx(2000, position)) == [
        ExitRequest(SYMBOL, ExitReason.CONFIDENCE, 2000, 0.29)
    ]
    assert strategy.on_event(score(3000, 0.2), ctx(3000, position)) == []  # asked already


def test_per_coin_exit_level_and_no_confidence_exit() -> None:
    strategy = ModelStrategy(config(exit_levels={SYMBOL: 0.4}), Market.SPOT)
    [request] = strategy.on_event(score(1000, 0.35), ctx(1000, long_position()))
    assert request == ExitRequest(SYMBOL, ExitReason.CONFIDENCE, 1000, 0.35)
    never = ModelStrategy(config(exit_ratio=None), Market.SPOT)
    assert never.on_event(score(1000, 0.01), ctx(1000, long_position())) == []


def test_max_holding_time_exits_on_rows_and_scores() -> None:
    cfg = StrategyConfig.model_validate({"kind": "model", "exits": {"max_hold_s": 600}})
    strategy = ModelStrategy(cfg, Market.SPOT)
    position = long_position(entry_ts_ms=1_000)
    assert strategy.on_event(RowClosed(SYMBOL, 600_000), ctx(600_999, position)) == []
    assert strategy.on_event(RowClosed(SYMBOL, 601_000), ctx(601_000, position)) == [
        ExitRequest(SYMBOL, ExitReason.MAX_HOLD, 601_000)
    ]
    assert strategy.on_event(RowClosed(SYMBOL, 602_000), ctx(602_000, position)) == []
    other = ModelStrategy(cfg, Market.SPOT)
    [request] = other.on_event(score(601_000, 0.9), ctx(601_000, position))
    assert request.reason is ExitReason.MAX_HOLD  # type: ignore[union-attr]


def test_spot_is_long_only() -> None:
    strategy = ModelStrategy(config(), Market.SPOT)
    event = score(1000, 0.1, fall_confidence=0.9, fall_threshold=0.6)
    assert strategy.on_event(event, ctx(1000)) == []


def test_futures_short_on_the_fall_model_and_its_exit() -> None:
    strategy = ModelStrategy(config(), Market.USDM)
    [request] = strategy.on_event(score(1000, 0.1, fall_confidence=0.7, fall_threshold=0.6),
                                  ctx(1000))
    assert isinstance(request, EnterRequest)
    assert (request.side, request.confidence, request.threshold) == (PositionSide.SHORT, 0.7, 0.6)
    short = PositionView(PositionSide.SHORT, Decimal(1), Decimal(100), 1000, 0.0)
    held = score(2000, 0.1, fall_confidence=0.35, fall_threshold=0.6)
    assert strategy.on_event(held, ctx(2000, short)) == []
    faded = score(3000, 0.9, fall_confidence=0.25, fall_threshold=0.6)
    assert strategy.on_event(faded, ctx(3000, short)) == [
        ExitRequest(SYMBOL, ExitReason.CONFIDENCE, 3000, 0.25)
    ]


def test_both_sides_at_once_is_no_decision() -> None:
    strategy = ModelStrategy(config(), Market.USDM)
    event = score(1000, 0.8, fall_confidence=0.8, fall_threshold=0.6)
    assert strategy.on_event(event, ctx(1000)) == []


@pytest.mark.parametrize(
    "market, score_value, side",
    [(Market.USDM, -0.5, PositionSide.SHORT), (Market.USDM, 0.5, PositionSide.LONG),
     (Market.SPOT, -0.5, None), (Market.USDM, 0.25, None)],
)
def test_combined_score_mode(market: Market, score_value: float, side: PositionSide | None) -> None:
    strategy = ModelStrategy(config(sides="combined", combined_threshold=0.3), market)
    requests = strategy.on_event(score(1000, 0.5, score=score_value), ctx(1000))
    if side is None:
        assert requests == []
    else:
        [request] = requests
        assert isinstance(request, EnterRequest)
        assert (request.side, request.confidence, request.strength) == (side, 0.5, 0.5)


def test_combined_score_from_rise_and_fall_when_not_given() -> None:
    strategy = ModelStrategy(config(sides="combined"), Market.USDM)
    [request] = strategy.on_event(score(1000, 0.2, fall_confidence=0.9), ctx(1000))
    assert request.side is PositionSide.SHORT  # type: ignore[union-attr]
    assert request.confidence == pytest.approx(0.7)  # type: ignore[union-attr]


def test_no_entry_on_an_invalid_book_or_against_a_filter() -> None:
    strategy = ModelStrategy(config(), Market.USDM)
    assert strategy.on_event(score(1000, 0.9), ctx(1000, book_valid={SYMBOL: False})) == []
    cfg = StrategyConfig.model_validate({"filters": {"funding": {"enabled": True}}})
    filtered = ModelStrategy(cfg, Market.USDM)
    crowded = {SYMBOL: MarketContext(funding=FundingSnapshot(0.001, 100.0, 0, 1000))}
    assert filtered.on_event(score(1000, 0.9), ctx(1000, market=crowded)) == []
    short = score(2000, 0.1, fall_confidence=0.9, fall_threshold=0.6)
    [request] = filtered.on_event(short, ctx(2000, market=crowded))  # shorts are paid: allowed
    assert request.side is PositionSide.SHORT  # type: ignore[union-attr]


def test_no_entry_before_any_price() -> None:
    strategy = ModelStrategy(config(), Market.SPOT)
    assert strategy.on_event(score(1000, 0.9), StrategyContext(1000, Decimal(1000))) == []


def test_an_atr_stop_waits_for_the_candles_to_know_the_atr() -> None:
    cfg = StrategyConfig.model_validate(
        {"kind": "model", "exits": {"stop_loss_pct": None, "stop_atr": 2.0}})
    strategy = ModelStrategy(cfg, Market.SPOT)
    assert strategy.on_event(score(1000, 0.9), ctx(1000)) == []  # one candle: no ATR, no stop
    closes = [100.0 + (0.5 if i % 2 else 0.0) for i in range(30)]
    data = candles(closes, wick=0.25)
    warm = StrategyContext(now_ms=2000, equity=Decimal(1000), candles={SYMBOL: ring_of(data)})
    [request] = strategy.on_event(score(2000, 0.9), warm)
    atr = wilder_atr(data["high"], data["low"], data["close"], 14)[-1]
    assert float(request.stop_distance) == pytest.approx(2.0 * atr)  # type: ignore[union-attr]
