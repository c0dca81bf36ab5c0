"""The soak's own parts: the looped tape is one continuous market, the RSS slope is a plain fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson

from exchange.sim.timeline import load_timeline
from tests.soak.looped_timeline import DEPTH_ID_JUMP, looped_timeline
from tests.soak.scaled_clock import ScaledClock
from tests.soak.soak_probes import RssSeries


def test_copies_continue_the_market_forward(tapes: dict[str, Path]) -> None:
    tape = tapes["spot_btcusdt"]
    recorded = load_timeline([tape])
    looped = looped_timeline([tape], market_s=15 * 60)  # a 5.8-minute tape: three copies
    frames = looped.frames
    n = len(frames) // 3
    assert len(frames) == 3 * n and n == sum(not f.stream.endswith("@bookTicker") for f in recorded.frames)
    times = [f.ts_recv_ns for f in frames]
    assert times == sorted(times)  # receive time never goes back, across seams too
    trades = [orjson.loads(f.data)["t"] for f in frames if f.stream.endswith("@trade")]
    assert trades == list(range(trades[0], trades[0] + len(trades)))  # contiguous over 3 copies
    diffs = [f.depth for f in frames if f.depth is not None]
    per_copy = len(diffs) // 3
    for seam in (per_copy, 2 * per_copy):  # one real gap at each seam, a chain inside a copy
        assert diffs[seam].first_update_id == diffs[seam - 1].final_update_id + DEPTH_ID_JUMP
        assert diffs[seam + 1].first_update_id == diffs[seam].final_update_id + 1
    first = frames[0]
    second_copy = frames[n]
    shifted = orjson.loads(second_copy.data)
    original = orjson.loads(first.data)
    assert shifted["E"] - original["E"] == (second_copy.ts_recv_ns - first.ts_recv_ns) // 1_000_000
    assert orjson.loads(second_copy.envelope)["data"] == shifted
    snaps = next(iter(looped.snapshots.values()))
    assert [s.last_update_id - snaps[0].last_update_id for s in snaps] == [
        d.final_update_id - diffs[0].final_update_id for d in (diffs[0], diffs[per_copy], diffs[2 * per_copy])
    ]


def test_rss_slope_is_a_least_squares_fit_per_market_hour() -> None:
    series = RssSeries(warmup_s=600)
    rng = np.random.default_rng(7)
    times = np.arange(0, 4 * 3600, 60.0)
    rss = 400 + 1.5 * times / 3600 + rng.normal(0, 0.3, len(times))
    for t, mb in zip(times, rss, strict=True):
        series.add(float(t), float(mb))
    kept = times >= 600
    expected = np.polyfit(times[kept] / 3600, rss[kept], 1)[0]
    assert abs(series.slope_mb_per_h() - expected) < 1e-9


def test_a_clock_spec_rebuilds_the_same_clock() -> None:
    clock = ScaledClock(37.5, (1_000, 2_000))
    again = ScaledClock.from_spec(clock.spec())
    assert (again.factor, again.spec()) == (37.5, clock.spec())
    assert again.wall_s(75.0) == 2.0
