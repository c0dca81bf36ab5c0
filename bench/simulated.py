"""What the simulated venue adds per market event, on the real spot BTCUSDT tape.

    python bench/simulated.py

Frames are decoded once up front. Baseline "pipeline only": MarketDataPipeline.on_frame for every
frame (book sync, book, folding). Figure: the time spent inside the simulated venue's calls
(on_book for every book change, on_trade for every trade, submits), with 6 resting limit orders
kept at the touch (re-placed as they fill) and a market order every 500 trades, per venue call and
per frame. Best of 5 runs each. Goal: the venue adds <= 25 % to the pipeline's cost per frame.
Writes bench/results/simulated.json.
"""

from __future__ import annotations

import json
import os
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.config import FoldConfig
from engine.events import TradePrinted
from engine.marketdata import MarketDataPipeline, SymbolMarketData
from engine.model import Instrument, Market, Side
from engine.orders import OrderIntent, OrderType
from engine.tape import read_tape
from exchange.binance.parse import FrameDecoder
from exchange.simulated import SimulatedVenue, SimulatedVenueConfig

TAPE = ROOT.parent / "shared" / "data" / "binance-tapes" / "spot_btcusdt_20240808.gz"
BTC = Instrument(
    "BTCUSDT",
    Market.SPOT,
    Decimal("0.01"),
    Decimal("0.00001"),
    Decimal("0.00001"),
    Decimal(9000),
    Decimal(5),
    "BTC",
    "USDT",
)
GOAL_SHARE = 0.25
REPEAT = 5


def load() -> list[tuple[bool, str | None, bytes, int, TradePrinted | None]]:
    decoder = FrameDecoder(Market.SPOT)
    out = []
    for f in read_tape(TAPE):
        event = None if f.snapshot_symbol else decoder.decode(f.payload, f.ts_recv_ns)
        trade = event if isinstance(event, TradePrinted) else None
        out.append(
            (f.snapshot_symbol is not None, f.snapshot_symbol, f.payload, f.ts_recv_ns, trade)
        )
    return out


def run(frames: list, with_venue: bool) -> tuple[float, float, int]:
    """Return (total µs per frame, venue µs per frame, venue calls)."""
    venue = SimulatedVenue(
        [BTC],
        {"USDT": Decimal(10**7), "BTC": Decimal(100)},
        SimulatedVenueConfig(market=Market.SPOT),
    )
    clock = time.perf_counter_ns
    venue_ns = calls = 0

    def on_book(state: SymbolMarketData) -> None:
        nonlocal venue_ns, calls
        if state.book_valid and state.last_depth_event_ms is not None:
            t0 = clock()
            venue.on_book("BTCUSDT", state.book, state.last_depth_event_ms)
            venue_ns += clock() - t0
            calls += 1

    pipeline = MarketDataPipeline(
        Market.SPOT,
        ["BTCUSDT"],
        FoldConfig(),
        on_book_changed=on_book if with_venue else None,
        tick_sizes={"BTCUSDT": BTC.tick_size},
    )
    state = pipeline.symbols["BTCUSDT"]
    trades = seq = 0
    start = clock()
    for is_snapshot, symbol, payload, ts_recv_ns, trade in frames:
        if is_snapshot:
            pipeline.on_snapshot(symbol, payload, ts_recv_ns)
            continue
        pipeline.on_frame(payload, ts_recv_ns)
        if not with_venue or trade is None:
            continue
        t0 = clock()
        venue.on_trade(trade)
        trades += 1
        calls += 1
        if state.book_valid:
            if venue.open_order_count() < 6:
                side = Side.BUY if seq % 2 else Side.SELL
                best = state.book.best_bid() if side is Side.BUY else state.book.best_ask()
                seq += 1
                intent = OrderIntent(
                    f"l{seq}",
                    "BTCUSDT",
                    side,
                    OrderType.LIMIT,
                    Decimal("0.001"),
                    price=Decimal(repr(best)),
                )
                venue.submit(intent, trade.ts_event_ms)
            if trades % 500 == 0:
                seq += 1
                intent = OrderIntent(
                    f"m{seq}", "BTCUSDT", Side.BUY, OrderType.MARKET, Decimal("0.01")
                )
                venue.submit(intent, trade.ts_event_ms)
        venue_ns += clock() - t0
    n = len(frames)
    return (clock() - start) / n / 1000, venue_ns / n / 1000, calls


def main() -> None:
    frames = load()
    base = min(run(frames, False)[0] for _ in range(REPEAT))
    runs = [run(frames, True) for _ in range(REPEAT)]
    venue_per_frame = min(r[1] for r in runs)
    calls = runs[0][2]
    per_call = venue_per_frame * len(frames) / calls
    share = venue_per_frame / base
    print(f"frames: {len(frames)}, venue calls: {calls}")
    print(f"pipeline only (baseline):    {base:7.2f} µs/frame")
    print(
        f"simulated venue:             {venue_per_frame:7.2f} µs/frame  ({per_call:.2f} µs per venue call)"
    )
    print(f"venue / pipeline: {share * 100:.1f} %   goal <= {GOAL_SHARE * 100:.0f} %")
    out = Path(os.environ.get("TICKLOOP_BENCH_RESULTS") or ROOT / "bench" / "results")
    out.mkdir(parents=True, exist_ok=True)
    results = {
        "frames": len(frames),
        "venue_calls": calls,
        "pipeline_us_per_frame": round(base, 3),
        "venue_us_per_frame": round(venue_per_frame, 3),
        "venue_us_per_call": round(per_call, 3),
        "venue_share_of_pipeline": round(share, 4),
        "goal_share": GOAL_SHARE,
        # the standard keys bench/run reads (bench/report.py)
        "figure": "simulated venue calls (on_book, on_trade, submits) per market frame",
        "value": round(venue_per_frame, 3),
        "unit": "µs/frame",
        "baseline": "MarketDataPipeline.on_frame alone (book sync, book, folding)",
        "baseline_value": round(base, 3),
        "ratio": round(base / venue_per_frame, 3),
        "goal": f"venue <= {GOAL_SHARE * 100:.0f} % of the pipeline (ratio >= {1 / GOAL_SHARE:g}x)",
        "met": share <= GOAL_SHARE,
    }
    (out / "simulated.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
