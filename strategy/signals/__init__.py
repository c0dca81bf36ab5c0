"""Strategies: the model-threshold strategy, the multi-indicator vote strategy, regime detection,
market-context filters. Strategies are reactors without I/O: `on_event(event, ctx) -> requests`.
"""

from strategy.signals.config import StrategyConfig
from strategy.signals.context import (
    FeatureVector,
    FundingSnapshot,
    MarketContext,
    PositionView,
    Sentiment,
    StrategyContext,
)
from strategy.signals.events import (
    CandleClosed,
    PositionClosed,
    PositionOpened,
    RowClosed,
    ScoreUpdated,
    StrategyEvent,
)
from strategy.signals.factory import Strategy, build_strategy, promoted_models_exist, resolve_kind
from strategy.signals.model_strategy import ModelStrategy
from strategy.signals.requests import (
    EnterRequest,
    ExitReason,
    ExitRequest,
    PositionSide,
    StrategyRequest,
    TakeProfitLevel,
)
from strategy.signals.vote_strategy import VoteStrategy

__all__ = [
    "CandleClosed",
    "EnterRequest",
    "ExitReason",
    "ExitRequest",
    "FeatureVector",
    "FundingSnapshot",
    "MarketContext",
    "ModelStrategy",
    "PositionClosed",
    "PositionOpened",
    "PositionSide",
    "PositionView",
    "RowClosed",
    "ScoreUpdated",
    "Sentiment",
    "Strategy",
    "StrategyConfig",
    "StrategyContext",
    "StrategyEvent",
    "StrategyRequest",
    "TakeProfitLevel",
    "VoteStrategy",
    "build_strategy",
    "promoted_models_exist",
    "resolve_kind",
]
