"""The vote strategy end to end on hand-built candles: warm-up, threshold, sides, exits, filters."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from signals_candles import append_candle, candles, wilder_atr

from engine.fold import new_candle_ring
from engine.model import Market
from engine.ring import ColumnRing
from strategy.signals import (
    CandleClosed,
    EnterRequest,
    ExitReason,
    ExitRequest,
    MarketContext,
    PositionSide,
    PositionView,
    RowClosed,
    StrategyConfig,
    StrategyContext,
    VoteStrategy,
)
from strategy.signals.context import FundingSnapshot
from strategy.signals.votes import SIGNAL_NAMES

SYMBOL = "ETHUSDT"
T0 = 1_700_000_000_000


def only(*names: str, **vote: object) -> StrategyConfig:
    """A vote config in which only the named signals have a weight."""
    weights = {n: (1.0 if n in names else 0.0) for n in SIGNAL_NAMES}
    return StrategyConfig.model_validate({"kind": "vote", "vote": {"weights": weights, **vote}})


class Feed:
    """Candles into a ring, one CandleClosed per candle, the strategy's requests collected."""

    def __init__(self, strategy: VoteStrategy, data: dict[str, np.ndarray]) -> None:
        self.strategy = strategy
        self.data = data
        self.ring: ColumnRing = new_candle_ring(400)
        self.i = 0

    def ctx(self, now_ms: int, **extra: object) -> StrategyContext:
        return StrategyContext(now_ms=now_ms, equity=Decimal(1000), candles={SYMBOL: self.ring},
                               **extra)  # type: ignore[arg-type]

    def step(self, **extra: object) -> list:
        ts = T0 + 60_000 * self.i
        append_candle(self.ring, self.data, self.i, ts)
        self.i += 1
        now = ts + 60_000  # the candle closes at the end of its minute
        return self.strategy.on_event(CandleClosed(SYMBOL, ts), self.ctx(now, **extra))

    def run(self, n: int, **extra: object) -> list[list]:
        return [self.step(**extra) for _ in range(n)]


def book(n: int, bid: float, ask: float) -> dict[str, np.ndarray]:
    closes = [100.0 + 0.2 * ((i % 4) in (1, 2)) for i in range(n)]
    return candles(closes, wick=0.2, bid_depth=bid, ask_depth=ask)


def test_no_vote_during_warm_up_then_a_long() -> None:
    strategy = VoteStrategy(only("book_imbalance"), Market.SPOT)
    warmup = strategy.config.vote.warmup_candles
    assert warmup == 114  # the regime's look-back (ATR 14 + 100 candles of baseline)
    feed = Feed(strategy, book(warmup + 1, bid=125.0, ask=75.0))
    assert feed.run(warmup - 1) == [[]] * (warmup - 1)
    assert strategy.decisions[SYMBOL].action == "warmup"
    [request] = feed.step()
    assert isinstance(request, EnterRequest)
    # one signal with weight 1: confidence = its strength, min(1, 0.25 / 0.2 - 0.5)
    assert (request.side, request.confidence, request.threshold) == (PositionSide.LONG, 0.75, 0.25)
    assert request.contributions == (("book_imbalance", 0.75),)
    assert request.reference_price == Decimal(repr(float(feed.data["close"][warmup - 1])))
    assert request.ts_ms == T0 + 60_000 * warmup
    assert strategy.decisions[SYMBOL].action == "enter"


def test_below_threshold_is_flat() -> None:
    strategy = VoteStrategy(only("book_imbalance", threshold=0.8), Market.SPOT)
    assert all(r == [] for r in Feed(strategy, book(130, 125.0, 75.0)).run(130))
    assert strategy.decisions[SYMBOL].action == "flat"
    assert strategy.decisions[SYMBOL].tally.confidence == pytest.approx(0.75)  # type: ignore[union-attr]


@pytest.mark.parametrize("market, side", [(Market.SPOT, None), (Market.USDM, PositionSide.SHORT)])
def test_selling_pressure_shorts_only_on_futures(market: Market, side: PositionSide | None) -> None:
    strategy = VoteStrategy(only("book_imbalance"), market)
    requests = [r for batch in Feed(strategy, book(130, 75.0, 125.0)).run(130) for r in batch]
    if side is None:
        assert requests == []
    else:
        # first at candle 114, again after the 300 s cooldown (no fill came): 114 + 5
        assert [(r.side, r.confidence, r.ts_ms) for r in requests] == [
            (side, -0.75, T0 + 60_000 * 114), (side, -0.75, T0 + 60_000 * 119),
            (side, -0.75, T0 + 60_000 * 124), (side, -0.75, T0 + 60_000 * 129)]


def test_regime_multipliers_weight_the_vote_by_hand() -> None:
    # A slow, steady climb (ADX 100: trend) with 62 % taker buying and a bid-heavy book:
    # cvd votes +0.7 (0.24 / 0.2 - 0.5), book_imbalance +0.75. In a trend cvd counts 1.5,
    # book_imbalance 1.0: confidence = (1.5 * 0.7 + 1.0 * 0.75) / 2.5 = 0.72.
    closes = [100.0 + 0.05 * i for i in range(130)]
    data = candles(closes, wick=0.2, buy_share=0.62, bid_depth=125.0, ask_depth=75.0)
    strategy = VoteStrategy(only("cvd", "book_imbalance", threshold=0.99), Market.SPOT)
    Feed(strategy, data).run(130)
    decision = strategy.decisions[SYMBOL]
    assert decision.regime.regime.value == "trend"  # type: ignore[union-attr]
    assert decision.tally.confidence == pytest.approx(0.72)  # type: ignore[union-attr]
    assert dict(decision.tally.contributions) == pytest.approx(  # type: ignore[union-attr]
        {"cvd": 1.05 / 2.5, "book_imbalance": 0.75 / 2.5})


def test_exit_when_the_vote_turns_against_the_position() -> None:
    strategy = VoteStrategy(only("book_imbalance"), Market.SPOT)
    feed = Feed(strategy, book(125, bid=75.0, ask=125.0))
    position = PositionView(PositionSide.LONG, Decimal(1), Decimal(100), T0 + 60_000 * 100, 0.0)
    feed.run(113, positions={SYMBOL: position})
    [request] = feed.step(positions={SYMBOL: position})
    assert request == ExitRequest(SYMBOL, ExitReason.REVERSAL, T0 + 60_000 * 114, -0.75)
    for _ in range(4):  # asked already: wait for the close ...
        assert feed.step(positions={SYMBOL: position}) == []
    assert len(feed.step(positions={SYMBOL: position})) == 1  # ... but not forever


def test_holding_with_the_vote_is_quiet() -> None:
    strategy = VoteStrategy(only("book_imbalance"), Market.SPOT)
    position = PositionView(PositionSide.LONG, Decimal(1), Decimal(100), T0 + 60_000 * 100, 0.0)
    batches = Feed(strategy, book(120, 125.0, 75.0)).run(120, positions={SYMBOL: position})
    assert all(b == [] for b in batches)
    assert strategy.decisions[SYMBOL].action == "hold"


def test_max_holding_time_on_rows() -> None:
    strategy = VoteStrategy(only("book_imbalance"), Market.SPOT)  # max_hold_s = 7200
    position = PositionView(PositionSide.LONG, Decimal(1), Decimal(100), T0, 0.0)
    ctx = StrategyContext(T0 + 7_199_000, Decimal(1000), positions={SYMBOL: position})
    assert strategy.on_event(RowClosed(SYMBOL, T0 + 7_198_000), ctx) == []
    ctx = StrategyContext(T0 + 7_200_000, Decimal(1000), positions={SYMBOL: position})
    assert strategy.on_event(RowClosed(SYMBOL, T0 + 7_199_000), ctx) == [
        ExitRequest(SYMBOL, ExitReason.MAX_HOLD, T0 + 7_200_000)
    ]


def test_filters_block_and_stale_data_is_neutral() -> None:
    cfg = StrategyConfig.model_validate({
        "vote": only("book_imbalance").vote.model_dump(),
        "filters": {"funding": {"enabled": True, "max_age_s": 120}},
    })
    end = T0 + 60_000 * 120
    crowded = FundingSnapshot(rate=0.001, mark_price=100.0, next_funding_ms=0, ts_ms=end - 1000)
    strategy = VoteStrategy(cfg, Market.USDM)
    feed = Feed(strategy, book(121, 125.0, 75.0))
    assert all(b == [] for b in feed.run(120, market={SYMBOL: MarketContext(funding=crowded)}))
    decision = strategy.decisions[SYMBOL]
    assert (decision.action, decision.blocked_by) == ("blocked", ("funding",))
    old = FundingSnapshot(rate=0.001, mark_price=100.0, next_funding_ms=0, ts_ms=end - 121_000)
    [request] = feed.step(market={SYMBOL: MarketContext(funding=old)})
    assert isinstance(request, EnterRequest)


def test_no_entry_while_the_book_is_out_of_sync() -> None:
    strategy = VoteStrategy(only("book_imbalance"), Market.SPOT)
    assert all(b == [] for b in Feed(strategy, book(120, 125.0, 75.0)).run(
        120, book_valid={SYMBOL: False}))
    assert strategy.decisions[SYMBOL].blocked_by == ("book",)


def test_atr_stop_and_trailing_are_passed_on() -> None:
    cfg = StrategyConfig.model_validate({
        "vote": only("book_imbalance").vote.model_dump(),
        "exits": {"stop_atr": 2.0, "trailing_stop_pct": 0.8,
                  "take_profits": [{"pct": 1.0, "fraction": 0.5}, {"pct": 2.0, "fraction": 0.5}]},
    })
    strategy = VoteStrategy(cfg, Market.SPOT)
    feed = Feed(strategy, book(114, 125.0, 75.0))
    [request] = feed.run(114)[-1]
    atr = wilder_atr(feed.data["high"], feed.data["low"], feed.data["close"], 14)[-1]
    assert float(request.stop_distance) == pytest.approx(2.0 * atr)
    assert request.trailing_stop_pct == Decimal("0.8")
    price = float(request.reference_price)
    assert [(float(tp.distance), tp.fraction) for tp in request.take_profits] == [
        (pytest.approx(price * 0.01), Decimal("0.5")),
        (pytest.approx(price * 0.02), Decimal("0.5")),
    ]
