"""Streaming feature vectors of every symbol, updated as rows and candles close.

Each configured feature set runs on its frequency: `second` sets on every closed per-second
row, `minute` sets on every closed one-minute candle (so the TA-Lib battery on candles costs
one stream update a minute). The latest vector of each set is kept per symbol, with its warm
flag; listeners get every vector (the strategy, the parity test, the dashboard).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from engine.marketdata import SymbolMarketData
from engine.ring import ColumnRing
from strategy.features import FeaturesConfig, StreamingFeatures, compile_feature_set
from strategy.features.plan import FeaturePlan

VectorListener = Callable[[str, str, int, np.ndarray], None]  # (symbol, set label, ts, vector)


@dataclass
class _SymbolSets:
    by_label: dict[str, StreamingFeatures]
    latest: dict[str, np.ndarray | None] = field(default_factory=dict)
    candles_seen: int = 0


class LiveFeatures:
    """Run the configured feature sets for every symbol, row by row and candle by candle."""

    def __init__(self, config: FeaturesConfig, symbols: Iterable[str]) -> None:
        self.plans: dict[str, FeaturePlan] = {s.label: compile_feature_set(s) for s in config.sets}
        self._second = [label for label, plan in self.plans.items() if plan.spec.frequency == "second"]
        self._minute = [label for label, plan in self.plans.items() if plan.spec.frequency == "minute"]
        self.symbols = {
            symbol: _SymbolSets({label: StreamingFeatures(plan) for label, plan in self.plans.items()})
            for symbol in symbols
        }
        self.listeners: list[VectorListener] = []

    def __call__(self, state: SymbolMarketData, n_rows: int) -> None:
        sets = self.symbols.get(state.symbol)
        if sets is None:
            return
        if self._second:
            self._feed(state.symbol, sets, state.rows, n_rows, self._second)
        new_candles = state.candles.total_appended - sets.candles_seen
        if new_candles and self._minute:
            self._feed(state.symbol, sets, state.candles, new_candles, self._minute)
        sets.candles_seen = state.candles.total_appended

    def _feed(self, symbol: str, sets: _SymbolSets, ring: ColumnRing, n: int, labels: list[str]) -> None:
        columns = {name: ring.window(name, n) for name in ring.columns}
        for i in range(min(n, len(ring))):
            row = {name: values[i] for name, values in columns.items()}
            ts = int(row["ts"])
            for label in labels:
                vector = sets.by_label[label].update(row)
                sets.latest[label] = vector
                if vector is not None:
                    for listener in self.listeners:
                        listener(symbol, label, ts, vector)

    def warm(self, symbol: str) -> bool:
        """Return True when every feature set of symbol is past its warm-up."""
        return all(stream.warm for stream in self.symbols[symbol].by_label.values())

    def latest(self, symbol: str, label: str) -> np.ndarray | None:
        return self.symbols[symbol].latest.get(label)

    def status(self) -> dict[str, dict[str, object]]:
        """Warm-up progress per symbol and set, for the heartbeat."""
        return {
            symbol: {label: f"{s.rows_seen}/{s.warmup_rows}" if not s.warm else "warm"
                     for label, s in sets.by_label.items()}
            for symbol, sets in self.symbols.items()
        }
