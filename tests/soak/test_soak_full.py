"""The full soak: 24 hours of market time in-process and 2 more with six kills (about 25 minutes),
then 6.5 hours of USDⓈ-M (about 8 minutes).

Off by default: `pytest --run-marked soak tests/soak -s`. Same checks as the short soak, plus
memory on the spot day: the RSS slope after warm-up must stay below the plan's flat threshold.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.model import Market
from tests.soak.run import run_soak
from tests.soak.soak_faults import kinds_for
from tests.soak.soak_report import summarize, table, write_json
from tests.soak.soak_run import SoakPlan

FULL = SoakPlan(market_hours=24.0, kill_hours=2.0, kills=6)


@pytest.mark.soak
async def test_full_day_soak(shared_data: Path, tmp_path: Path) -> None:
    in_process, kills = await run_soak(FULL, tmp_path)
    summary = summarize(FULL, [in_process, kills])
    text = table(summary)
    print(text)
    write_json(summary)
    assert set(kinds_for(Market.SPOT)) <= set(in_process.faults), text
    assert kills.recoveries["restarted after SIGKILL"] == FULL.kills, text
    assert in_process.books_compared >= 1000, text
    assert summary["violations_unexplained"] == 0, text
    assert summary["rss_flat"], text


USDM = SoakPlan(market=Market.USDM, market_hours=6.0, kill_hours=0.5, kills=2, speed=60.0)


@pytest.mark.soak
async def test_usdm_soak(shared_data: Path, tmp_path: Path) -> None:
    """USDⓈ-M (about 8 minutes): algo stops, listenKey expiry, funding in every tape copy."""
    in_process, kills = await run_soak(USDM, tmp_path)
    summary = summarize(USDM, [in_process, kills])
    text = table(summary)
    print(text)
    assert set(kinds_for(Market.USDM)) <= set(in_process.faults), text
    assert kills.recoveries["restarted after SIGKILL"] == USDM.kills, text
    assert summary["violations_unexplained"] == 0, text
