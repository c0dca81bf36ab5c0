"""The feature engine's input schemas match the market-data layer's ring buffers."""

from __future__ import annotations

import pytest

from strategy.features.schema import MINUTE_COLUMNS, SECOND_COLUMNS, depth_bands


def test_schemas_match_the_fold() -> None:
    fold = pytest.importorskip("engine.fold", reason="the market-data fold is not in this tree")
    assert tuple(fold.ROW_COLUMNS) == SECOND_COLUMNS
    assert tuple(fold.CANDLE_COLUMNS) == MINUTE_COLUMNS


def test_depth_bands_per_frequency() -> None:
    assert depth_bands("second") == (30, 100, 300, 1000)
    assert depth_bands("minute") == (100,)
