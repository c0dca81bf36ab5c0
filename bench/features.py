"""Cost of the default feature set per symbol-second, streaming, against naive recomputation.

    python bench/features.py

Figures (one symbol, one core):
* streaming, amortised: the per-second set updated every second + the minute set (TA-Lib
  `all` preset, book, stats) updated once per closed candle, i.e. divided by 60;
* baseline "naive recomputation of the full TA-Lib battery over a 300-row window", every
  second (what a bot that recomputes everything on each tick pays);
* the alternatives measured for the candle TA-Lib battery before choosing: talib stream
  objects (`update()` per candle) vs recomputing the battery over a 300-row window per candle.
Parity is checked in the same run (streaming == batch on the bench's own frames), and the
baseline's window recomputation is compared with full-history batch values.
Writes bench/results/features.json.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import talib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from strategy.features import (
    FeaturesConfig,
    StreamingFeatures,
    check_parity,
    compile_feature_set,
    compute_batch,
    ta,
)
from strategy.features.schema import DEPTH_BANDS_BP, SECOND_COLUMNS

DATA = ROOT.parent / "shared" / "data"
KLINES = DATA / "klines" / "usdm-1m" / "FILUSDT-1m-2023-08.csv.gz"
GOAL_MS = 0.25
WINDOW = 300


def load_candles() -> pd.DataFrame:
    k = pd.read_csv(KLINES)
    return pd.DataFrame(
        {
            "ts": k["open_time"],
            "open": k["open"],
            "high": k["high"],
            "low": k["low"],
            "close": k["close"],
            "vwap": k["quote_volume"] / k["volume"].where(k["volume"] > 0),
            "volume": k["volume"],
            "quote_volume": k["quote_volume"],
            "trades": k["count"],
            "buy_volume": k["taker_buy_volume"],
            "seconds": 60,
            "bid_depth_100bp": np.exp(np.random.default_rng(1).normal(8, 0.5, len(k))),
            "ask_depth_100bp": np.exp(np.random.default_rng(2).normal(8, 0.5, len(k))),
        }
    )


def synthetic_rows(n: int, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tick = 0.001
    close = np.round((4.25 + np.cumsum(rng.normal(0, 0.002, n))) / tick) * tick
    trades = rng.poisson(2.0, n)
    volume = rng.lognormal(3, 1, n) * trades
    buy = volume * rng.uniform(0, 1, n)
    rows = {
        "ts": 1_690_848_000_000 + 1000 * np.arange(n),
        "open": close,
        "high": close + tick * (trades > 1),
        "low": close - tick * (trades > 2),
        "close": close,
        "vwap": close,
        "volume": volume,
        "quote_volume": volume * close,
        "trades": trades,
        "buy_volume": buy,
        "sell_volume": volume - buy,
        "bid": close - tick,
        "ask": close + tick,
        "book_valid": True,
        "late_frames": 0,
        "resyncs": 0,
        "stale_ms": 0,
    }
    for i, bp in enumerate(DEPTH_BANDS_BP):
        rows[f"bid_depth_{bp}bp"] = rng.lognormal(5 + i, 0.5, n)
        rows[f"ask_depth_{bp}bp"] = rng.lognormal(5 + i, 0.5, n)
    return pd.DataFrame(rows)[list(SECOND_COLUMNS)]


def per_update_us(streaming: StreamingFeatures, records: list[dict], warm: int) -> float:
    """Median cost of one update() over the records after the first `warm` ones, in µs."""
    for row in records[:warm]:
        streaming.update(row)
    costs = []
    for row in records[warm:]:
        start = time.perf_counter_ns()
        streaming.update(row)
        costs.append(time.perf_counter_ns() - start)
    return statistics.median(costs) / 1e3


def battery_calls() -> list[tuple]:
    calls = []
    for name in ta.all_preset_functions():
        info = ta.talib_info(name)
        calls.append((getattr(talib, name), info.default_columns))
    return calls


def window_recompute_us(candles: pd.DataFrame, repeats: int = 200) -> float:
    """Median cost of recomputing the full battery over the last 300 rows, in µs."""
    arrays = {
        c: candles[c].to_numpy(dtype=np.float64) for c in ("open", "high", "low", "close", "volume")
    }
    calls = battery_calls()
    costs = []
    for end in range(WINDOW + 1000, WINDOW + 1000 + repeats):
        window = {c: a[end - WINDOW : end] for c, a in arrays.items()}
        start = time.perf_counter_ns()
        for function, inputs in calls:
            function(*(window[c] for c in inputs))
        costs.append(time.perf_counter_ns() - start)
    return statistics.median(costs) / 1e3


def talib_only_stream_us(candles: pd.DataFrame) -> float:
    spec = FeaturesConfig.model_validate(
        {"sets": [{"frequency": "minute", "generators": [{"kind": "talib", "preset": "all"}]}]}
    ).sets[0]
    records = candles.iloc[:3000].to_dict("records")
    return per_update_us(StreamingFeatures(spec), records, 1000)


def window_values_vs_full_history(candles: pd.DataFrame, spec) -> tuple[int, int]:
    """Count `all`-preset columns where a 300-row recomputation differs from full history."""
    plan = compile_feature_set(spec)
    end = 5000
    full = compute_batch(candles.iloc[:end], plan).iloc[-1]
    window = compute_batch(candles.iloc[end - WINDOW : end], plan).iloc[-1]
    talib_columns = [c for f in plan.features if isinstance(f, ta.TalibFeature) for c in f.columns]
    differ = sum(
        1
        for c in talib_columns
        if not (full[c] == window[c] or (np.isnan(full[c]) and np.isnan(window[c])))
        and abs(full[c] - window[c]) > 1e-9 * max(abs(full[c]), abs(window[c]))
    )
    return differ, len(talib_columns)


def main() -> None:
    config = FeaturesConfig()
    minute_spec, second_spec = config.get("minute"), config.get("second")
    candles = load_candles()
    rows = synthetic_rows(4000)

    minute_us = per_update_us(
        StreamingFeatures(minute_spec), candles.iloc[:3000].to_dict("records"), 1000
    )
    second_us = per_update_us(StreamingFeatures(second_spec), rows.to_dict("records"), 1000)
    amortised_us = second_us + minute_us / 60.0
    baseline_us = window_recompute_us(candles)
    stream_talib_us = talib_only_stream_us(candles)

    minute_parity = check_parity(candles.iloc[:3000], minute_spec)
    second_parity = check_parity(rows.iloc[:3000], second_spec)
    differ, total = window_values_vs_full_history(candles, minute_spec)

    print("Default feature set, one symbol, streaming (median per update)")
    print(
        f"  per-second set ({len(compile_feature_set(second_spec).columns)} cols), every second: {second_us:8.1f} µs"
    )
    print(
        f"  minute set ({len(compile_feature_set(minute_spec).columns)} cols), per closed candle:  {minute_us:8.1f} µs"
    )
    print(f"  amortised per symbol-second (second + minute/60):        {amortised_us:8.1f} µs")
    print(
        f"baseline: naive full TA-Lib battery over a {WINDOW}-row window, every second: {baseline_us:8.1f} µs"
    )
    print(f"ratio baseline / streaming: {baseline_us / amortised_us:.1f}x")
    status = "MET" if amortised_us / 1e3 <= GOAL_MS else "NOT MET"
    print(
        f"goal: <= {GOAL_MS} ms per symbol-second amortised -> {amortised_us / 1e3:.3f} ms ({status})"
    )
    print("TA-Lib battery per closed candle, alternatives:")
    print(f"  talib.stream objects, update() per candle:           {stream_talib_us:8.1f} µs")
    print(f"  recompute over a {WINDOW}-row window per candle:          {baseline_us:8.1f} µs")
    print(f"  ratio: {baseline_us / stream_talib_us:.1f}x")
    print(f"parity minute set: {minute_parity.summary().splitlines()[0]}")
    print(f"  max rel error {minute_parity.max_rel_error}")
    print(f"parity second set: {second_parity.summary().splitlines()[0]}")
    print(f"  max rel error {second_parity.max_rel_error}")
    print(
        f"window recomputation vs full-history values: {differ} of {total} TA-Lib columns differ "
        "(beyond 1e-9 relative) at the same row - the baseline is not value-identical"
    )
    assert minute_parity.ok and second_parity.ok, "streaming differs from batch"

    results = {
        "second_set_update_us": second_us,
        "minute_set_update_us": minute_us,
        "amortised_us_per_symbol_second": amortised_us,
        "baseline_window_recompute_us": baseline_us,
        "ratio_baseline_over_streaming": baseline_us / amortised_us,
        "goal_ms": GOAL_MS,
        "goal_met": amortised_us / 1e3 <= GOAL_MS,
        "talib_stream_update_us": stream_talib_us,
        "talib_window_recompute_us": baseline_us,
        "parity_minute_ok": minute_parity.ok,
        "parity_minute_max_rel_error": minute_parity.max_rel_error,
        "parity_second_ok": second_parity.ok,
        "parity_second_max_rel_error": second_parity.max_rel_error,
        "window_vs_full_history_talib_columns_differing": differ,
        "talib_columns": total,
        # the standard keys bench/run reads (bench/report.py)
        "figure": "default feature sets per symbol-second, streaming (second set + minute set / 60)",
        "value": amortised_us,
        "unit": "µs",
        "baseline": f"full TA-Lib battery recomputed over a {WINDOW}-row window every second",
        "baseline_value": baseline_us,
        "ratio": baseline_us / amortised_us,
        "goal": f"<= {GOAL_MS * 1000:g} µs ({GOAL_MS} ms)",
        "met": amortised_us / 1e3 <= GOAL_MS,
    }
    out = Path(os.environ.get("TICKLOOP_BENCH_RESULTS") or ROOT / "bench" / "results") / "features.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
