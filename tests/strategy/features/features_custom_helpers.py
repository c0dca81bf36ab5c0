"""Custom feature functions the tests name by import path (features_custom_helpers:...)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from strategy.features import feature_function


@feature_function(
    lookback=lambda p: int(p["window"]),
    columns=lambda p: [f"momentum_{p['window']}", f"volume_max_{p['window']}"],
)
def momentum(frame: pd.DataFrame, params: Mapping[str, Any]) -> pd.DataFrame:
    """Close over close `window` rows ago, minus 1; largest volume over window + 1 rows."""
    window = int(params["window"])
    close = frame["close"]
    return pd.DataFrame(
        {
            f"momentum_{window}": close / close.shift(window) - 1.0,
            f"volume_max_{window}": frame["volume"].rolling(window + 1).max(),
        }
    )


@feature_function(lookback=3, columns=["close_expanding_mean"])
def expanding_mean(frame: pd.DataFrame, params: Mapping[str, Any]) -> pd.DataFrame:
    """Break the contract: declares 3 rows of look-back but averages the whole history."""
    return pd.DataFrame({"close_expanding_mean": frame["close"].expanding().mean()})


@feature_function(lookback=0, columns=["next_close"])
def peeks_ahead(frame: pd.DataFrame, params: Mapping[str, Any]) -> pd.DataFrame:
    """Break the contract: reads the next row's close."""
    return pd.DataFrame({"next_close": frame["close"].shift(-1)})


@feature_function(lookback=0, columns=["declared"])
def wrong_columns(frame: pd.DataFrame, params: Mapping[str, Any]) -> pd.DataFrame:
    """Return a column other than the declared one."""
    return pd.DataFrame({"other": np.zeros(len(frame))})


def undeclared(frame: pd.DataFrame, params: Mapping[str, Any]) -> pd.DataFrame:
    """Declare nothing (the config must then give lookback and columns)."""
    return pd.DataFrame({"twice_close": 2.0 * frame["close"]})


NOT_CALLABLE = 42
