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
    frames = list(looped.frames)
    n = len(frames) // 3
    kept = [f for f in recorded.frames if f.stream.endswith(("@trade", "@depth@100ms"))]
    assert len(frames) == 3 * n and n == len(
        kept
    )  # bookTicker and the synthesized aggTrade left out
    times = [f.ts_recv_ns for f in frames]
    assert times == sorted(times)  # receive time never goes back, across seams too
    trades = [orjson.loads(f.data)["t"] for f in frames if f.stream.endswith("@trade")]
    assert trades == list(range(trades[0], trades[0] + len(trades)))  # contiguous over 3 copies
    diffs = [f.depth for f in frames if f.depth is not None]
    per_copy = len(diffs) // 3
    for seam in (per_copy, 2 * per_copy):  # one real gap at each seam, a chain inside a copy
        assert diffs[seam].first_update_id == diffs[seam - 1].final_update_id + DEPTH_ID_JUMP
        assert diffs[seam + 1].first_update_id == diffs[seam].final_update_id + 1
    assert orjson.loads(frames[n].envelope)["data"] == orjson.loads(frames[n].data)
    snaps = next(iter(looped.snapshots.values()))
    assert [s.last_update_id - snaps[0].last_update_id for s in snaps] == [
        d.final_update_id - diffs[0].final_update_id
        for d in (diffs[0], diffs[per_copy], diffs[2 * per_copy])
    ]


def test_shifted_payloads_move_exactly_the_time_and_id_fields(tapes: dict[str, Path]) -> None:
    looped = looped_timeline([tapes["usdm_btcusdt_2023a"], tapes["usdm_btcusdt_2023b"]], 1200)
    frames = list(looped.frames)
    n = len(frames) // 3
    base, third = frames[:n], frames[2 * n :]  # copy 2: moved by two periods
    ms = (third[0].ts_recv_ns - base[0].ts_recv_ns) // 1_000_000
    depth = (
        next(f.depth for f in third if f.depth).final_update_id
        - next(f.depth for f in base if f.depth).final_update_id
    )
    aggs = [orjson.loads(f.data) for f in base if f.stream.endswith("@aggTrade")]
    agg_span = max(a["a"] for a in aggs) - min(a["a"] for a in aggs) + 1
    trade_span = max(a["l"] for a in aggs) - min(a["f"] for a in aggs) + 1
    by_field = {"E": ms, "T": ms, "U": depth, "u": depth, "pu": depth,
                "a": 2 * agg_span, "f": 2 * trade_span, "l": 2 * trade_span}  # fmt: skip
    seen = set()
    for original, shifted in zip(base, third, strict=True):
        expected = orjson.loads(original.data)
        seen.add(expected["e"])
        for name, by in by_field.items():
            if isinstance(expected.get(name), int):  # depth "a" is the asks list: untouched
                expected[name] += by
        assert orjson.loads(shifted.data) == expected, expected["e"]
    assert seen == {"depthUpdate", "aggTrade", "markPriceUpdate"}  # @trade and bookTicker left out


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
