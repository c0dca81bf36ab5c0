"""A small, deterministic SYNTHETIC spot tape for `tickloop demo` without recorded data.

It is labelled synthetic everywhere it appears (file name, the symbol SYNTHUSDT, a first
comment-free marker stream) so nobody mistakes it for market data. The tape follows the real
Binance wire format: diff-depth events with contiguous U/u ids, trades with increasing ids,
and one REST depth snapshot recorded after a few diffs were buffered, as a real recorder sees it.
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

SYNTHETIC_SYMBOL = "SYNTHUSDT"
_TICK = 0.01
_LEVELS = 200


def _fmt(x: float, decimals: int = 8) -> str:
    return f"{x:.{decimals}f}"


def write_synthetic_tape(path: Path, *, seconds: int = 300, seed: int = 7, start_ms: int = 1_700_000_000_000) -> Path:
    """Write a deterministic synthetic tape of `seconds` of market time to path (gzip)."""
    rng = random.Random(seed)
    stream = SYNTHETIC_SYMBOL.lower()
    mid_ticks = 3_000_000  # 30,000.00
    bids = {mid_ticks - i: round(rng.uniform(0.01, 3.0), 5) for i in range(1, _LEVELS + 1)}
    asks = {mid_ticks + i: round(rng.uniform(0.01, 3.0), 5) for i in range(1, _LEVELS + 1)}
    update_id = 1_000_000
    trade_id = 5_000_000
    lines: list[tuple[int, str]] = []
    recorder_lag_ns = 3_000_000

    def depth_frame(ts_ms: int, changes_b: dict[int, float], changes_a: dict[int, float], first: int, last: int) -> str:
        data = {
            "e": "depthUpdate", "E": ts_ms, "s": SYNTHETIC_SYMBOL, "U": first, "u": last,
            "b": [[_fmt(p * _TICK), _fmt(q)] for p, q in sorted(changes_b.items(), reverse=True)],
            "a": [[_fmt(p * _TICK), _fmt(q)] for p, q in sorted(changes_a.items())],
        }
        return json.dumps({"stream": f"{stream}@depth@100ms", "data": data}, separators=(",", ":"))

    snapshot_at_step = 4
    for step in range(seconds * 10):
        ts_ms = start_ms + step * 100
        # trades: a few per 100 ms, at the touch
        for k in range(rng.choice((0, 0, 1, 1, 2, 3))):
            buyer_is_maker = rng.random() < 0.5
            best_bid, best_ask = max(bids), min(asks)
            price_ticks = best_bid if buyer_is_maker else best_ask
            qty = round(rng.uniform(0.0001, 0.5), 5)
            trade_id += 1
            t_ms = ts_ms - 99 + k * 7
            data = {"e": "trade", "E": t_ms + 1, "s": SYNTHETIC_SYMBOL, "t": trade_id,
                    "p": _fmt(price_ticks * _TICK), "q": _fmt(qty), "T": t_ms, "m": buyer_is_maker, "M": True}
            lines.append(((t_ms + 1) * 1_000_000 + recorder_lag_ns,
                          json.dumps({"stream": f"{stream}@trade", "data": data}, separators=(",", ":"))))
        # book drift: move the mid by -1/0/+1 tick, then update a few levels
        drift = rng.choice((-1, 0, 0, 1))
        changes_b: dict[int, float] = {}
        changes_a: dict[int, float] = {}
        if drift > 0:
            level = min(asks)
            del asks[level]
            changes_a[level] = 0.0
            bids[level] = changes_b[level] = round(rng.uniform(0.01, 2.0), 5)
        elif drift < 0:
            level = max(bids)
            del bids[level]
            changes_b[level] = 0.0
            asks[level] = changes_a[level] = round(rng.uniform(0.01, 2.0), 5)
        best_bid, best_ask = max(bids), min(asks)
        for _ in range(rng.randint(1, 6)):
            p = best_bid - rng.randint(0, 60)
            q = 0.0 if rng.random() < 0.2 else round(rng.uniform(0.01, 3.0), 5)
            if p == best_bid and q == 0.0:
                q = 0.5
            changes_b[p] = q
            if q:
                bids[p] = q
            else:
                bids.pop(p, None)
            p = best_ask + rng.randint(0, 60)
            q = 0.0 if rng.random() < 0.2 else round(rng.uniform(0.01, 3.0), 5)
            if p == best_ask and q == 0.0:
                q = 0.5
            changes_a[p] = q
            if q:
                asks[p] = q
            else:
                asks.pop(p, None)
        n_ids = rng.randint(1, 5)
        first = update_id + 1
        update_id += n_ids
        lines.append((ts_ms * 1_000_000 + recorder_lag_ns, depth_frame(ts_ms, changes_b, changes_a, first, update_id)))
        if step == snapshot_at_step:
            snapshot = {
                "symbol": SYNTHETIC_SYMBOL, "lastUpdateId": update_id,
                "bids": [[_fmt(p * _TICK), _fmt(q)] for p, q in sorted(bids.items(), reverse=True)],
                "asks": [[_fmt(p * _TICK), _fmt(q)] for p, q in sorted(asks.items())],
            }
            # recorded a little after diff `step` arrived, as a real REST round trip would be
            lines.append((ts_ms * 1_000_000 + recorder_lag_ns + 40_000_000, json.dumps(snapshot, separators=(",", ":"))))
    lines.sort(key=lambda item: item[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=6) as fh:
        for ts_ns, payload in lines:
            fh.write(f"{ts_ns} {payload}\n")
    return path
