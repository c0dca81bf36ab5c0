"""Choosing and building the strategy: the Strategy protocol, `auto` resolution, construction."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal, Protocol

from engine.model import Market
from strategy.signals.config import StrategyConfig
from strategy.signals.context import StrategyContext
from strategy.signals.events import StrategyEvent
from strategy.signals.model_strategy import ModelStrategy
from strategy.signals.requests import StrategyRequest
from strategy.signals.vote_strategy import VoteStrategy


class Strategy(Protocol):
    """A reactor without I/O: one event and a read-only context in, requests out."""

    name: str

    def on_event(self, event: StrategyEvent, ctx: StrategyContext) -> list[StrategyRequest]: ...


def promoted_models_exist(models_dir: Path, symbols: Iterable[str]) -> bool:
    """True when any symbol has a promoted bundle (models_dir/SYMBOL/<label>/)."""
    for symbol in symbols:
        root = Path(models_dir) / symbol.upper()
        if root.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir()):
            return True
    return False


def resolve_kind(config: StrategyConfig, model_available: bool) -> Literal["vote", "model"]:
    """Resolve `auto`: the model strategy once a model is promoted, else the vote strategy."""
    if config.kind == "auto":
        return "model" if model_available else "vote"
    return config.kind


def build_strategy(config: StrategyConfig, market: Market, model_available: bool) -> Strategy:
    """Build the configured strategy for a market (spot: long only; futures: both sides)."""
    if resolve_kind(config, model_available) == "model":
        return ModelStrategy(config, market)
    return VoteStrategy(config, market)
