"""Journal write costs on this machine (a real SQLite file in a temporary directory).

    python bench/journal.py

* intent: `Journal.record_intent` (one committed transaction per intent, WAL, synchronous=NORMAL:
  the intent is durable before the venue call); baseline "naive sqlite3": the default
  rollback journal with synchronous=FULL and a commit per row. Goal: <= 1000 µs per intent.
* fill (batched): `Journal.record_order_event(OrderFilled)` with one `flush()` per 20 writes (one
  event-loop turn); baseline: the same journal committing after every write (max_batch=1).
  Goal: <= 50 µs per fill.
* equity sample with 3 marks, batched. Writes bench/results/journal.json.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.journal import Journal
from engine.model import Side
from engine.orders import Liquidity, OrderFilled, OrderIntent, OrderType

N_INTENTS = 400
N_FILLS = 4000
TURN = 20
GOAL_INTENT_US = 1000.0
GOAL_FILL_US = 50.0


def _intent(i: int) -> OrderIntent:
    return OrderIntent(
        f"bench-{i}",
        "BTCUSDT",
        Side.BUY,
        OrderType.LIMIT,
        Decimal("0.01"),
        price=Decimal("60000.10"),
    )


def _fill(i: int) -> OrderFilled:
    return OrderFilled(
        "BTCUSDT",
        f"bench-{i % N_INTENTS}",
        i,
        Side.BUY,
        Decimal("60000.10"),
        Decimal("0.001"),
        Decimal("0.006"),
        "USDT",
        Liquidity.MAKER,
        i,
        False,
    )


def bench_intents(path: Path) -> float:
    j = Journal.open(path)
    start = time.perf_counter_ns()
    for i in range(N_INTENTS):
        j.record_intent(_intent(i), i)
    elapsed = time.perf_counter_ns() - start
    j.close()
    return elapsed / N_INTENTS / 1000


def bench_naive(path: Path) -> float:
    conn = sqlite3.connect(str(path))
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE intents (cid TEXT PRIMARY KEY, body TEXT, ts INTEGER)")
    start = time.perf_counter_ns()
    for i in range(N_INTENTS):
        conn.execute("INSERT INTO intents VALUES (?, ?, ?)", (f"bench-{i}", "{}", i))
        conn.commit()
    elapsed = time.perf_counter_ns() - start
    conn.close()
    return elapsed / N_INTENTS / 1000


def bench_fills(path: Path, max_batch: int) -> float:
    j = Journal.open(path, max_batch=max_batch)
    for i in range(N_INTENTS):
        j.record_intent(_intent(i), i)
    start = time.perf_counter_ns()
    for i in range(N_FILLS):
        j.record_order_event(_fill(i))
        if i % TURN == TURN - 1:
            j.flush()
    j.flush()
    elapsed = time.perf_counter_ns() - start
    j.close()
    return elapsed / N_FILLS / 1000


def bench_equity(path: Path) -> float:
    j = Journal.open(path)
    marks = {"BTCUSDT": 60000.1, "ETHUSDT": 2500.2, "SOLUSDT": 150.3}
    start = time.perf_counter_ns()
    for i in range(N_FILLS):
        j.record_equity(i * 60_000, 10_000.0 + i, 500.0, marks)
        if i % TURN == TURN - 1:
            j.flush()
    j.flush()
    elapsed = time.perf_counter_ns() - start
    j.close()
    return elapsed / N_FILLS / 1000


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        intent_us = bench_intents(d / "a.sqlite")
        naive_us = bench_naive(d / "b.sqlite")
        fill_us = bench_fills(d / "c.sqlite", max_batch=1000)
        fill_each_us = bench_fills(d / "d.sqlite", max_batch=1)
        equity_us = bench_equity(d / "e.sqlite")
    results = {
        "intent_us": round(intent_us, 1),
        "baseline_naive_commit_us": round(naive_us, 1),
        "intent_ratio_vs_naive": round(naive_us / intent_us, 2),
        "intent_goal_us": GOAL_INTENT_US,
        "fill_batched_us": round(fill_us, 2),
        "baseline_fill_commit_each_us": round(fill_each_us, 2),
        "fill_ratio_vs_commit_each": round(fill_each_us / fill_us, 2),
        "fill_goal_us": GOAL_FILL_US,
        "equity_with_3_marks_batched_us": round(equity_us, 2),
        # the standard rows bench/run reads (bench/report.py)
        "rows": [
            {
                "name": "intent",
                "figure": "Journal.record_intent, committed (WAL, synchronous=NORMAL)",
                "value": round(intent_us, 1),
                "unit": "µs",
                "baseline": "naive sqlite3: rollback journal, synchronous=FULL, commit per row",
                "baseline_value": round(naive_us, 1),
                "ratio": round(naive_us / intent_us, 2),
                "goal": f"<= {GOAL_INTENT_US:g} µs",
                "met": intent_us <= GOAL_INTENT_US,
            },
            {
                "name": "fill",
                "figure": f"Journal.record_order_event(OrderFilled), flushed every {TURN} writes",
                "value": round(fill_us, 2),
                "unit": "µs",
                "baseline": "the same journal committing after every write",
                "baseline_value": round(fill_each_us, 2),
                "ratio": round(fill_each_us / fill_us, 2),
                "goal": f"<= {GOAL_FILL_US:g} µs",
                "met": fill_us <= GOAL_FILL_US,
            },
        ],
    }
    print(
        f"record_intent (committed):        {intent_us:8.1f} µs   goal <= {GOAL_INTENT_US:.0f} µs"
    )
    print(
        f"  baseline naive sqlite3 commit:  {naive_us:8.1f} µs   ratio {naive_us / intent_us:.2f}x"
    )
    print(f"fill, flushed every {TURN} writes:   {fill_us:8.2f} µs   goal <= {GOAL_FILL_US:.0f} µs")
    print(
        f"  baseline commit every write:    {fill_each_us:8.2f} µs   ratio {fill_each_us / fill_us:.2f}x"
    )
    print(f"equity sample + 3 marks, batched: {equity_us:8.2f} µs")
    out = Path(os.environ.get("TICKLOOP_BENCH_RESULTS") or ROOT / "bench" / "results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "journal.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
