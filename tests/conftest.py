"""Shared fixtures: the read-only recorded Binance data in ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings

# Property tests draw the same examples on every run: CI stays reproducible; explore with
# `--hypothesis-profile=explore` (or the fuzz suite's deep profile).
settings.register_profile("tickloop", derandomize=True, deadline=None, database=None)
settings.register_profile("explore", deadline=None)
settings.load_profile("tickloop")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

TAPES = {
    "spot_btcusdt": SHARED_DATA / "binance-tapes" / "spot_btcusdt_20240808.gz",
    "spot_ethusdt": SHARED_DATA / "binance-tapes" / "spot_ethusdt_20240808.gz",
    "usdm_btcusdt": SHARED_DATA / "binance-tapes" / "usdm_btcusdt_20240808.gz",
    "usdm_btcusdt_2023a": SHARED_DATA / "binance-tapes-2023" / "btcusdt_20230404.dat.gz",
    "usdm_btcusdt_2023b": SHARED_DATA / "binance-tapes-2023" / "btcusdt_20230405.dat.gz",
}


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tapes(shared_data: Path) -> dict[str, Path]:
    return TAPES


# Tests that need the outside world or hours of machine time run only when asked for by name:
# `pytest --run-marked testnet` (needs TICKLOOP_TESTNET_* keys and internet), `--run-marked soak`.
OFF_BY_DEFAULT = ("internet", "testnet", "soak")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-marked", action="append", default=[], choices=OFF_BY_DEFAULT,
        help="also run tests with this off-by-default marker (repeatable)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = set(config.getoption("--run-marked"))
    for item in items:
        for marker in OFF_BY_DEFAULT:
            if item.get_closest_marker(marker) is not None and marker not in wanted:
                item.add_marker(pytest.mark.skip(reason=f"off by default: --run-marked {marker}"))
