"""Offline replay: fold a recorded tape through the live market-data path, deterministically.

`tickloop replay TAPE --out DIR` writes DIR/rows.parquet and DIR/candles.parquet. Frames are fed
in tape order to the very `MarketDataPipeline` the live feed uses; depth snapshots come from the
tape (a replay cannot fetch one), so a book that gaps stays invalid until the tape holds a newer
snapshot — exactly what a live engine without REST access would know.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from engine.config import Config, FoldConfig
from engine.marketdata import MarketDataPipeline, SymbolMarketData
from engine.model import Market
from engine.ring import ColumnRing
from engine.tape import infer_market, read_tape, tape_symbols


class RingCollector:
    """Copy every newly closed row and candle out of the ring buffers, so nothing is lost to wrap-around."""

    def __init__(self) -> None:
        self.rows: dict[str, list[dict[str, np.ndarray]]] = {}
        self.candles: dict[str, list[dict[str, np.ndarray]]] = {}
        self._candles_seen: dict[str, int] = {}

    @staticmethod
    def _take(ring: ColumnRing, n: int) -> dict[str, np.ndarray]:
        return {name: np.array(ring.window(name, n)) for name in ring.columns}

    def __call__(self, state: SymbolMarketData, n_rows: int) -> None:
        self.rows.setdefault(state.symbol, []).append(self._take(state.rows, n_rows))
        self.collect_candles(state)

    def collect_candles(self, state: SymbolMarketData) -> None:
        new_candles = state.candles.total_appended - self._candles_seen.get(state.symbol, 0)
        if new_candles:
            self.candles.setdefault(state.symbol, []).append(self._take(state.candles, new_candles))
            self._candles_seen[state.symbol] = state.candles.total_appended

    @staticmethod
    def _frame(chunks: dict[str, list[dict[str, np.ndarray]]], ring_columns: dict) -> pd.DataFrame:
        frames = []
        for symbol, parts in sorted(chunks.items()):
            data = {name: np.concatenate([p[name] for p in parts]) for name in ring_columns}
            frame = pd.DataFrame(data)
            frame.insert(0, "symbol", symbol)
            frames.append(frame)
        if not frames:
            empty = pd.DataFrame({name: np.array([], dtype=dtype) for name, dtype in ring_columns.items()})
            empty.insert(0, "symbol", pd.Series([], dtype=str))
            return empty
        return pd.concat(frames, ignore_index=True)

    def rows_frame(self, columns: dict) -> pd.DataFrame:
        return self._frame(self.rows, columns)

    def candles_frame(self, columns: dict) -> pd.DataFrame:
        return self._frame(self.candles, columns)


@dataclass(frozen=True)
class ReplayResult:
    rows: pd.DataFrame
    candles: pd.DataFrame
    pipeline: MarketDataPipeline


def iter_replay(path: Path, pipeline: MarketDataPipeline) -> Iterator[int]:
    """Feed every frame of a tape to the pipeline, yielding the running frame count."""
    for count, frame in enumerate(read_tape(path), 1):
        if frame.snapshot_symbol is not None:
            pipeline.on_snapshot(frame.snapshot_symbol, frame.payload, frame.ts_recv_ns)
        else:
            pipeline.on_frame(frame.payload, frame.ts_recv_ns)
        yield count


def replay_tape(path: Path, fold: FoldConfig, market: Market | None = None) -> ReplayResult:
    """Fold a whole tape offline and return its rows and candles as DataFrames."""
    from engine.fold import CANDLE_COLUMNS, ROW_COLUMNS

    collector = RingCollector()
    pipeline = MarketDataPipeline(
        market or infer_market(path), tape_symbols(path), fold, on_rows_closed=collector
    )
    for _ in iter_replay(path, pipeline):
        pass
    pipeline.flush()
    for state in pipeline.symbols.values():
        collector.collect_candles(state)
    return ReplayResult(collector.rows_frame(ROW_COLUMNS), collector.candles_frame(CANDLE_COLUMNS), pipeline)


def replay_to_parquet(tape: Path, out_dir: Path, config: Config) -> str:
    """Replay a tape and write rows.parquet and candles.parquet into out_dir; return a summary line."""
    result = replay_tape(tape, config.fold)
    out_dir.mkdir(parents=True, exist_ok=True)
    result.rows.to_parquet(out_dir / "rows.parquet", index=False)
    result.candles.to_parquet(out_dir / "candles.parquet", index=False)
    stats = result.pipeline.decoder.counters
    return (
        f"replayed {result.pipeline.stats.frames} frames of {', '.join(result.pipeline.symbols)}: "
        f"{len(result.rows)} rows, {len(result.candles)} candles -> {out_dir} "
        f"(decoder: {dict(stats)})"
    )
