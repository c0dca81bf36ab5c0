"""Column names: stable, documented, multi-output functions expanded by name."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import talib
from talib import abstract

from strategy.features import FeaturesConfig, FeatureSetSpec, compile_feature_set, compute_batch
from strategy.features.reference import BEGIN, END, render_reference

DOCS = Path(__file__).resolve().parents[3] / "docs" / "features.md"


def columns_of(*generators: dict, frequency: str = "minute") -> tuple[str, ...]:
    spec = FeatureSetSpec.model_validate({"frequency": frequency, "generators": list(generators)})
    return compile_feature_set(spec).columns


def test_multi_output_functions_are_expanded_into_named_columns() -> None:
    assert columns_of({"kind": "talib", "name": "MACD"}) == ("macd", "macd_signal", "macd_hist")
    assert columns_of({"kind": "talib", "name": "BBANDS"}) == (
        "bbands_upperband",
        "bbands_middleband",
        "bbands_lowerband",
    )
    assert columns_of({"kind": "talib", "name": "STOCH"}) == ("stoch_slowk", "stoch_slowd")
    assert columns_of({"kind": "talib", "name": "HA"}) == (
        "ha_open",
        "ha_high",
        "ha_low",
        "ha_close",
    )
    assert columns_of({"kind": "talib", "name": "AROON"}) == ("aroon_down", "aroon_up")
    assert columns_of({"kind": "talib", "name": "MAMA"}) == ("mama", "mama_fama")
    assert columns_of({"kind": "talib", "name": "CDLENGULFING"}) == ("cdlengulfing",)


def test_parameters_inputs_and_alias_in_names() -> None:
    assert columns_of({"kind": "talib", "name": "RSI", "params": {"timeperiod": 14}}) == ("rsi",)
    assert columns_of({"kind": "talib", "name": "RSI", "windows": [7, 21]}) == (
        "rsi_timeperiod7",
        "rsi_timeperiod21",
    )
    assert columns_of({"kind": "talib", "name": "BBANDS", "params": {"nbdevup": 2.5}})[0] == (
        "bbands_nbdevup2.5_upperband"
    )
    assert columns_of({"kind": "talib", "name": "ATR", "inputs": {"close": "vwap"}}) == (
        "atr_vwap",
    )
    assert columns_of({"kind": "talib", "name": "RSI", "inputs": {"price": "vwap"}}) == (
        "rsi_vwap",
    )
    assert columns_of({"kind": "talib", "name": "MACD", "alias": "fast"}) == (
        "fast",
        "fast_signal",
        "fast_hist",
    )


def test_all_preset_covers_every_function_but_mavp() -> None:
    expected = sum(
        len(abstract.Function(name).output_names)
        for name in talib.get_functions()
        if name != "MAVP"
    )
    columns = columns_of({"kind": "talib", "preset": "all"})
    assert len(columns) == expected == 233
    assert len(set(columns)) == len(columns)
    assert sum(1 for c in columns if c.startswith("cdl")) == 61
    assert all(re.fullmatch(r"[a-z0-9_.]+", c) for c in columns)


def test_all_preset_exclude() -> None:
    columns = columns_of({"kind": "talib", "preset": "all", "exclude": ["macd", "HT_SINE"]})
    assert "macd" not in columns and "ht_sine_sine" not in columns
    assert len(columns) == 233 - 3 - 2


def test_multi_output_columns_hold_the_matching_talib_output() -> None:
    rng = np.random.default_rng(5)
    close = 50 + np.cumsum(rng.normal(0, 0.3, 400))
    frame = pd.DataFrame({"close": close})
    spec = FeatureSetSpec.model_validate(
        {"frequency": "minute", "generators": [{"kind": "talib", "name": "MACD"}]}
    )
    features = compute_batch(frame, spec)
    macd, signal, hist = talib.MACD(close)
    np.testing.assert_array_equal(features["macd"], macd)
    np.testing.assert_array_equal(features["macd_signal"], signal)
    np.testing.assert_array_equal(features["macd_hist"], hist)


def test_book_and_stats_names() -> None:
    assert columns_of({"kind": "book"}, frequency="minute") == (
        "book_imbalance_100bp",
        "flow_taker_buy_share",
        "flow_trade_intensity",
    )
    assert columns_of({"kind": "book", "flow_window": 5}, frequency="second")[-2:] == (
        "flow_taker_buy_share_5",
        "flow_trade_intensity_5",
    )
    assert columns_of(
        {
            "kind": "stats",
            "columns": ["close"],
            "transform": "level",
            "windows": [5],
            "stats": ["mean"],
        }
    ) == ("close_mean_5",)
    assert columns_of(
        {
            "kind": "stats",
            "columns": ["volume"],
            "transform": "diff",
            "windows": [3, 9],
            "stats": ["std"],
        }
    ) == ("volume_diff_std_3", "volume_diff_std_9")


def test_docs_list_every_column_of_the_all_preset_and_the_defaults() -> None:
    documented = set(re.findall(r"`([a-z0-9_.]+)`", DOCS.read_text()))
    missing = []
    for feature_set in FeaturesConfig().sets:
        missing += [c for c in compile_feature_set(feature_set).columns if c not in documented]
    missing += [c for c in columns_of({"kind": "talib", "preset": "all"}) if c not in documented]
    second_all = columns_of({"kind": "book"}, {"kind": "stats"}, frequency="second")
    missing += [c for c in second_all if c not in documented]
    assert missing == []


def test_docs_column_reference_is_up_to_date() -> None:
    text = DOCS.read_text()
    generated = text[text.index(BEGIN) : text.index(END) + len(END)]
    assert generated == render_reference(), (
        "run: python -m strategy.features.reference docs/features.md"
    )
