"""Features computed live (over the loopback simulator, every second) equal batch features.

The real tapes are replayed through the full live path (sockets, book sync, folding, streaming
feature sets in the App) and every feature value of every second is compared with the batch
computation on the same rows: equal to 1e-9 relative after warm-up, for the full TA-Lib `all`
preset plus the book and stats generators.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.app import App
from live_harness import live_run
from strategy.features import compile_feature_set, compute_batch

FEATURES = {
    "sets": [
        {
            "name": "second_full",
            "frequency": "second",
            "generators": [
                {"kind": "talib", "preset": "all"},
                {"kind": "book", "flow_window": 10},
                {"kind": "stats", "columns": ["close", "volume"], "transform": "log_return", "windows": [20, 60]},
            ],
        }
    ]
}


@pytest.mark.parametrize("name", ["spot_btcusdt", "usdm_btcusdt"])
async def test_live_streaming_features_equal_batch(tapes: dict[str, Path], name: str) -> None:
    vectors: dict[int, np.ndarray] = {}

    def attach(app: App) -> None:
        app.features.listeners.append(lambda symbol, label, ts, vector: vectors.__setitem__(ts, vector.copy()))

    run = await live_run(tapes[name], overrides={"features": FEATURES}, on_app=attach)
    rows = run.rows.drop(columns=["symbol"]).reset_index(drop=True)  # type: ignore[union-attr]
    plan = compile_feature_set(run.app.config.features.get("second_full"))
    assert len(plan.columns) > 250  # the whole TA-Lib battery (233 columns) + book + stats
    batch = compute_batch(rows, plan)
    assert len(vectors) >= len(rows) - plan.warmup_rows - 5, "live features missing for warm rows"
    compared = 0
    for i, ts in enumerate(rows["ts"]):
        live = vectors.get(int(ts))
        if live is None:
            assert i < plan.warmup_rows + 5, f"no live vector for warm row {i}"
            continue
        expected = batch.iloc[i].to_numpy(dtype=float)
        same = (live == expected) | (np.isnan(live) & np.isnan(expected))
        close = np.isclose(live, expected, rtol=1e-9, atol=0.0) | same
        bad = np.flatnonzero(~close)
        assert bad.size == 0, f"row {i} ts={ts}: {[plan.columns[j] for j in bad[:5]]} differ"
        compared += int(np.isfinite(expected).sum())
    assert compared > 40_000
