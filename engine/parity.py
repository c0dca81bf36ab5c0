"""`tickloop parity`: prove on any recorded data that streaming features equal batch features.

A tape is folded by the same path the live engine uses (`engine.replay`), then every feature set
runs on the rows or candles of its frequency, per symbol, streaming row by row and in batch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from engine.config import Config
from engine.replay import replay_tape
from strategy.features import check_parity, compile_feature_set, infer_frequency


def _frames(source: Path, config: Config) -> dict[str, pd.DataFrame]:
    if source.suffix == ".parquet":
        frame = pd.read_parquet(source)
        return {infer_frequency(frame.columns): frame}
    result = replay_tape(source, config.fold)
    return {"second": result.rows, "minute": result.candles}


def run_parity(source: Path, config: Config, *, set_label: str | None = None, rtol: float = 1e-9) -> int:
    """Check every (symbol, feature set) of source; print one line each; exit 0 only if all match."""
    frames = _frames(source, config)
    sets = [config.features.get(set_label)] if set_label else list(config.features.sets)
    failures = 0
    for spec in sets:
        plan = compile_feature_set(spec)
        frame = frames.get(spec.frequency)
        if frame is None or frame.empty:
            print(f"{spec.label}: no {spec.frequency} data in {source}")
            continue
        groups = frame.groupby("symbol", sort=True) if "symbol" in frame.columns else [("-", frame)]
        for symbol, part in groups:
            part = part.drop(columns=["symbol"], errors="ignore").reset_index(drop=True)
            if len(part) <= plan.warmup_rows:
                print(f"{symbol} {spec.label}: {len(part)} rows, fewer than the warm-up of "
                      f"{plan.warmup_rows}: nothing to compare")
                continue
            report = check_parity(part, plan, rtol)
            print(f"{symbol} {spec.label}: {report.summary()}")
            failures += not report.ok
    if failures:
        print(f"parity FAILED for {failures} symbol/set pair(s)", file=sys.stderr)
        return 1
    return 0
