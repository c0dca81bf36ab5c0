"""Fixtures for the simulator tests: tapes loaded once per session (the timeline is immutable)."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchange.sim.timeline import Timeline, load_timeline


@pytest.fixture(scope="session")
def spot_tape(tapes: dict[str, Path]) -> Path:
    return tapes["spot_btcusdt"]


@pytest.fixture(scope="session")
def usdm_tape(tapes: dict[str, Path]) -> Path:
    return tapes["usdm_btcusdt"]


@pytest.fixture(scope="session")
def spot_timeline(spot_tape: Path) -> Timeline:
    return load_timeline([spot_tape])


@pytest.fixture(scope="session")
def usdm_timeline(usdm_tape: Path) -> Timeline:
    return load_timeline([usdm_tape])


@pytest.fixture(scope="session")
def usdm2023_timeline(tapes: dict[str, Path]) -> Timeline:
    return load_timeline([tapes["usdm_btcusdt_2023a"]])
