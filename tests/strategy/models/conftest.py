"""Fixtures for the model tests: real FILUSDT one-minute klines and a small, fast feature set."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from exchange.history import read_kline_csv
from strategy.models.merge import klines_to_candles


@pytest.fixture(scope="session")
def fil_klines(shared_data: Path) -> pd.DataFrame:
    """Two weeks of real USDⓈ-M FILUSDT one-minute klines (2023-08-01 .. 08-14)."""
    klines = read_kline_csv(shared_data / "klines" / "usdm-1m" / "FILUSDT-1m-2023-08.csv.gz")
    return klines.iloc[: 14 * 1440].reset_index(drop=True)


@pytest.fixture(scope="session")
def fil_candles(fil_klines: pd.DataFrame) -> pd.DataFrame:
    return klines_to_candles(fil_klines)
