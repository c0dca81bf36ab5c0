"""bench/tick_to_order.py --quick runs end to end: every order a signal sent reached the venue once.

No timing is asserted: the counts come from two sides that do not share code, the engine's venue
(orders it was asked to send) and the stamping server in its own process (POSTs it received).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "tick_to_order.py"
KEYS = {"figure", "unit", "baseline", "baseline_name", "ratio", "goal", "met"}


def test_quick_run_writes_figures_and_every_order_reaches_the_server_once(tmp_path: Path) -> None:
    out = tmp_path / "tick_to_order.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--samples", "100", "--out", str(out)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert KEYS <= result.keys()
    assert result["samples"] > 0
    assert result["tick_to_order_us"]["n"] == result["samples"]
    assert result["baseline_one_way_us"]["n"] > 0
    # each approved signal became one order, and each order one POST at the server
    assert result["signals"] == result["orders_submitted_by_loop"] + result["denied"]
    assert result["orders_sent"] == result["orders_submitted_by_loop"] > result["samples"]
    assert result["posts_received"] == result["orders_sent"]
    assert result["orders_reached_server_once"] == result["orders_sent"]
    assert (
        result["orders_missing"] == result["orders_duplicated"] == result["unexpected_posts"] == 0
    )
    assert result["bad_signatures"] == 0
    assert result["drained"] is True
    assert "p99" in result["tick_to_order_us"] and isinstance(result["met"], bool)
    # the path measured is the engine's default one: orders of idle symbols on the warm wire
    assert result["order_wire"]["sent"] > 0
