"""Fixtures for the feature-engine tests (frames built in features_frames.py)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from features_frames import aggtrade_rows, candles_from_klines, synthetic_rows


@pytest.fixture(scope="session")
def rows_synthetic() -> pd.DataFrame:
    return synthetic_rows()


@pytest.fixture(scope="session")
def rows_aggtrades(shared_data: Path) -> pd.DataFrame:
    return aggtrade_rows(shared_data)


@pytest.fixture(scope="session")
def fil_month(shared_data: Path) -> pd.DataFrame:
    return candles_from_klines(shared_data / "klines" / "usdm-1m" / "FILUSDT-1m-2023-08.csv.gz")
