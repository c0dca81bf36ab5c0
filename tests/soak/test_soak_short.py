"""The short soak (runs in CI): about 1.2 hours of market time through the full engine.

One hour in-process at 150x (books compared, every fault kind the simulator knows for spot), then
12 minutes with the engine as a child process at 30x, SIGKILLed twice and restarted on its
journal. Every invariant is checked every market minute; the closing table is printed (pytest -s)
and written to bench/results/soak.json. The full day is test_soak_full.py (off by default).
"""

from __future__ import annotations

from pathlib import Path

from engine.model import Market
from tests.soak.run import run_soak
from tests.soak.soak_faults import kinds_for
from tests.soak.soak_report import summarize, table, write_json
from tests.soak.soak_run import SoakPlan

SHORT = SoakPlan(
    market_hours=1.0, kill_hours=0.2, kills=2, speed=150.0, kill_speed=30.0,
    fault_gap_s=45.0, warmup_s=300.0, settle_s=180.0,
)  # fmt: skip


async def test_short_soak_keeps_every_invariant(shared_data: Path, tmp_path: Path) -> None:
    in_process, kills = await run_soak(SHORT, tmp_path)
    summary = summarize(SHORT, [in_process, kills])
    text = table(summary)
    print(text)
    write_json(summary)
    # the run did what a soak must: trade, fault everything, kill, compare books, check often
    assert set(kinds_for(Market.SPOT)) <= set(in_process.faults), text
    assert kills.faults["sigkill"] + kills.faults["sigkill_aimed"] == SHORT.kills, text
    assert kills.recoveries["restarted after SIGKILL"] == SHORT.kills, text
    assert in_process.orders >= 5 and kills.orders >= 1, text
    assert in_process.books_compared >= 100, text
    assert in_process.checks >= 55 and kills.checks >= 10, text
    # and nothing broke that is not a known, reported engine bug (tests/soak/known_bugs.py)
    assert summary["violations_unexplained"] == 0, text
