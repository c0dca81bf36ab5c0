"""The simulator timelines the Binance adapter tests replay (loaded once per module)."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchange.sim.timeline import Timeline, load_timeline


@pytest.fixture(scope="module")
def spot_timeline(tapes: dict[str, Path]) -> Timeline:
    return load_timeline([tapes["spot_btcusdt"]])


@pytest.fixture(scope="module")
def usdm_timeline(tapes: dict[str, Path]) -> Timeline:
    return load_timeline([tapes["usdm_btcusdt"]])
