"""What the soak samples besides the invariants: books against the simulator's, and memory (RSS).

Books: every `every`-th diff the simulator emits, its own book (top `depth` levels) is kept under
(symbol, final update id); when the engine's book reaches that id, the two are compared, exactly
(Decimal). Ids the engine never reaches (a gap fault hid them) are dropped once it is past them,
so memory stays bounded however long the run.

RSS: read from /proc/<pid>/statm (psutil is not a dependency); the slope is a least-squares fit
in MB per hour of market time over the samples after warm-up.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from engine.marketdata import SymbolMarketData
from exchange.sim.server import SimServer

Side = tuple[tuple[Decimal, Decimal], ...]
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
_MAX_PENDING = 256


@dataclass
class BookSampler:
    """Compares sampled engine books with the simulator's at the same update id."""

    sim: SimServer
    on_mismatch: Callable[[str, str], None]  # (key, detail)
    every: int = 10
    depth: int = 100
    compared: int = 0
    unmatched: int = 0  # sampled ids the engine never showed (gapped, or it was resyncing)
    _seen: int = 0
    _pending: dict[tuple[str, int], tuple[Side, Side]] = field(default_factory=dict)

    def on_sim_depth(self, symbol: str, final_update_id: int) -> None:
        """The simulator's callback after each emitted diff."""
        self._seen += 1
        if self._seen % self.every:
            return
        if len(self._pending) >= _MAX_PENDING:  # the engine is far behind: forget the oldest
            del self._pending[next(iter(self._pending))]
            self.unmatched += 1
        bids, asks = self.sim.book_levels(symbol, depth=self.depth)
        self._pending[(symbol, final_update_id)] = (_norm(bids), _norm(asks))

    def on_engine_book(self, state: SymbolMarketData) -> None:
        """The App's on_book_changed hook."""
        if not self._pending:
            return
        update_id = state.sync.last_update_id
        expected = self._pending.pop((state.symbol, update_id), None)
        if expected is None:
            passed = [k for k in self._pending if k[0] == state.symbol and k[1] < update_id]
            for key in passed:
                del self._pending[key]
            self.unmatched += len(passed)
            return
        if not state.book_valid:
            self.unmatched += 1
            return
        ours = tuple(
            tuple((Decimal(repr(p)).normalize(), Decimal(repr(q)).normalize())
                  for p, q in state.book.levels(side, self.depth))
            for side in ("bid", "ask")
        )  # fmt: skip
        self.compared += 1
        if ours != expected:
            side = "bids" if ours[0] != expected[0] else "asks"
            self.on_mismatch(f"{state.symbol}@{update_id}", f"{side} differ from the simulator's")


def _norm(levels: list[tuple[Decimal, Decimal]]) -> Side:
    return tuple((p.normalize(), q.normalize()) for p, q in levels)


def rss_mb(pid: int | None = None) -> float:
    """Return the resident set size of a process (this one by default) in MB."""
    statm = Path(f"/proc/{pid or 'self'}/statm").read_text().split()
    return int(statm[1]) * _PAGE_BYTES / 1e6


@dataclass
class RssSeries:
    """(market seconds, RSS MB) samples of one process; slope after warm-up."""

    warmup_s: float
    samples: list[tuple[float, float]] = field(default_factory=list)

    def add(self, market_s: float, mb: float) -> None:
        self.samples.append((market_s, mb))

    def steady(self) -> list[tuple[float, float]]:
        return [(t, mb) for t, mb in self.samples if t >= self.warmup_s]

    def slope_mb_per_h(self) -> float | None:
        """Least-squares slope of RSS over market time, MB per market hour (None: < 3 samples)."""
        points = self.steady()
        if len(points) < 3:
            return None
        n = len(points)
        mean_t = sum(t for t, _ in points) / n
        mean_m = sum(m for _, m in points) / n
        var = sum((t - mean_t) ** 2 for t, _ in points)
        if var == 0:
            return None
        cov = sum((t - mean_t) * (m - mean_m) for t, m in points)
        return cov / var * 3600.0

    def span_mb(self) -> tuple[float, float] | None:
        points = self.steady()
        return (min(m for _, m in points), max(m for _, m in points)) if points else None
