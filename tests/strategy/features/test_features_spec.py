"""Config validation: every mistake is reported at its YAML path with a clear message."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from strategy.features import FeaturesConfig, compile_feature_set


def yaml_path(loc: tuple[Any, ...]) -> str:
    return "features" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)


def error_lines(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as info:
        FeaturesConfig.model_validate(data)
    return [f"{yaml_path(e['loc'])}: {e['msg']}" for e in info.value.errors()]


def one_set(*generators: dict[str, Any], frequency: str = "minute") -> dict[str, Any]:
    return {"sets": [{"frequency": frequency, "generators": list(generators)}]}


def test_default_config_is_valid_and_has_a_minute_and_a_second_set() -> None:
    config = FeaturesConfig()
    assert [s.frequency for s in config.sets] == ["minute", "second"]
    minute = compile_feature_set(config.get("minute"))
    assert "rsi" in minute.columns and "book_imbalance_100bp" in minute.columns
    second = compile_feature_set(config.get("second"))
    assert "book_spread_bp" in second.columns


def test_yaml_section_loads() -> None:
    text = """
sets:
  - name: candles
    frequency: minute
    generators:
      - {kind: talib, name: rsi, windows: [7, 14, 28]}
      - {kind: talib, name: BBANDS, params: {timeperiod: 10, nbdevup: 2.5}}
      - {kind: talib, name: ATR, inputs: {close: vwap}}
      - {kind: stats, columns: [close, volume], transform: level, windows: [5]}
  - frequency: second
    generators:
      - {kind: book, features: [imbalance, spread_bp], bands_bp: [30, 100]}
"""
    config = FeaturesConfig.model_validate(yaml.safe_load(text))
    columns = compile_feature_set(config.get("candles")).columns
    assert columns[:3] == ("rsi_timeperiod7", "rsi", "rsi_timeperiod28")
    assert "bbands_timeperiod10_nbdevup2.5_upperband" in columns
    assert "atr_vwap" in columns
    assert compile_feature_set(config.get("second")).columns == (
        "book_imbalance_30bp",
        "book_imbalance_100bp",
        "book_spread_bp",
    )


def test_unknown_talib_function_names_its_path() -> None:
    lines = error_lines(
        one_set({"kind": "book"}, {"kind": "stats"}, {"kind": "talib", "name": "RSX"})
    )
    assert lines == [
        "features.sets[0].generators[2].name: 'RSX' is not a TA-Lib function (did you mean RSI?)"
    ]


def test_unknown_parameter() -> None:
    lines = error_lines(one_set({"kind": "talib", "name": "RSI", "params": {"timeperod": 14}}))
    assert lines == [
        (
            "features.sets[0].generators[0].params.timeperod: "
            "'timeperod' is not a parameter of RSI (timeperiod)"
        )
    ]


def test_parameter_value_talib_rejects() -> None:
    lines = error_lines(one_set({"kind": "talib", "name": "RSI", "params": {"timeperiod": 1}}))
    assert len(lines) == 1
    assert lines[0].startswith("features.sets[0].generators[0].params: TA-Lib rejects RSI")
    assert "Bad Parameter" in lines[0]


def test_float_for_an_integer_parameter() -> None:
    lines = error_lines(one_set({"kind": "talib", "name": "RSI", "params": {"timeperiod": 14.5}}))
    assert lines == [
        (
            "features.sets[0].generators[0].params.timeperiod: RSI timeperiod must be an integer, "
            "got 14.5"
        )
    ]


def test_window_needs_a_timeperiod() -> None:
    lines = error_lines(one_set({"kind": "talib", "name": "BOP", "windows": [5]}))
    assert lines == [
        "features.sets[0].generators[0].windows: BOP has no `timeperiod` for windows to set"
    ]


def test_unknown_column_for_the_frequency() -> None:
    lines = error_lines(one_set({"kind": "talib", "name": "RSI", "inputs": {"price": "bid"}}))
    assert len(lines) == 1
    assert lines[0].startswith(
        "features.sets[0].generators[0].inputs.price: unknown column 'bid' for one-minute candles"
    )
    lines = error_lines(one_set({"kind": "stats", "columns": ["close", "clsoe"]}))
    assert lines[0].startswith(
        "features.sets[0].generators[0].columns[1]: unknown column 'clsoe' for one-minute candles"
    )


def test_input_that_the_function_does_not_have() -> None:
    lines = error_lines(one_set({"kind": "talib", "name": "RSI", "inputs": {"high": "high"}}))
    assert lines == [
        "features.sets[0].generators[0].inputs.high: 'high' is not an input of RSI (price, close)"
    ]


def test_mavp_needs_a_periods_column() -> None:
    lines = error_lines(one_set({"kind": "talib", "name": "MAVP"}))
    assert lines == [
        "features.sets[0].generators[0].inputs: MAVP needs `inputs: {periods: <column>}`"
    ]


def test_name_and_preset_are_exclusive() -> None:
    lines = error_lines(one_set({"kind": "talib", "name": "RSI", "preset": "all"}))
    assert lines == [
        (
            "features.sets[0].generators[0]: give exactly one of `name` (a TA-Lib function) "
            "or `preset: all`"
        )
    ]


def test_unknown_kind_and_extra_field() -> None:
    assert error_lines(one_set({"kind": "ta", "name": "RSI"})) == [
        (
            "features.sets[0].generators[0].kind: 'ta' is not a generator kind "
            "(talib, book, stats, custom)"
        )
    ]
    lines = error_lines(one_set({"kind": "talib", "name": "RSI", "period": 14}))
    assert lines == ["features.sets[0].generators[0].period: Extra inputs are not permitted"]


def test_book_feature_the_frequency_cannot_compute() -> None:
    lines = error_lines(one_set({"kind": "book", "features": ["imbalance", "spread_bp"]}))
    assert lines == [
        (
            "features.sets[0].generators[0].features: 'spread_bp' needs best bid/ask columns, "
            "which only per-second rows carry"
        )
    ]
    lines = error_lines(one_set({"kind": "book", "bands_bp": [30]}))
    assert lines[0].startswith("features.sets[0].generators[0].bands_bp: no [30] bp depth")


def test_duplicate_columns_point_at_the_second_generator() -> None:
    lines = error_lines(
        one_set({"kind": "talib", "preset": "all"}, {"kind": "talib", "name": "RSI"})
    )
    assert lines == [
        (
            "features.sets[0].generators[1]: column 'rsi' is also produced by generators[0] "
            "(rename one with `alias`, or change its parameters)"
        )
    ]


def test_duplicate_set_names() -> None:
    data = {
        "sets": [
            {"frequency": "minute", "generators": [{"kind": "book"}]},
            {"frequency": "minute", "generators": [{"kind": "stats"}]},
        ]
    }
    assert error_lines(data) == ["features.sets[1].name: set name 'minute' is also used by sets[0]"]


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        ("nodots", "'nodots' is not an import path of the form package.module:function"),
        (
            "no_such_package.module:f",
            (
                "cannot import module 'no_such_package.module': ModuleNotFoundError: "
                "No module named 'no_such_package'"
            ),
        ),
        (
            "features_custom_helpers:nope",
            "module 'features_custom_helpers' has no attribute 'nope'",
        ),
        (
            "features_custom_helpers:NOT_CALLABLE",
            "'features_custom_helpers:NOT_CALLABLE' is not callable",
        ),
    ],
)
def test_bad_custom_import_path(function: str, expected: str) -> None:
    lines = error_lines(one_set({"kind": "custom", "function": function}))
    assert lines == [f"features.sets[0].generators[0].function: {expected}"]


def test_custom_function_without_declared_lookback() -> None:
    lines = error_lines(
        one_set({"kind": "custom", "function": "features_custom_helpers:undeclared"})
    )
    assert len(lines) == 1
    assert lines[0].startswith(
        "features.sets[0].generators[0].lookback: features_custom_helpers:undeclared declares "
        "no look-back"
    )
    # The config can declare what the function does not.
    config = FeaturesConfig.model_validate(
        one_set(
            {
                "kind": "custom",
                "function": "features_custom_helpers:undeclared",
                "lookback": 0,
                "columns": ["twice_close"],
            }
        )
    )
    assert compile_feature_set(config.sets[0]).columns == ("twice_close",)


def test_custom_inputs_are_checked_against_the_frequency() -> None:
    generator = {
        "kind": "custom",
        "function": "features_custom_helpers:momentum",
        "params": {"window": 3},
        "inputs": ["close", "bid"],
    }
    lines = error_lines(one_set(generator))
    assert lines[0].startswith(
        "features.sets[0].generators[0].inputs[1]: unknown column 'bid' for one-minute candles"
    )
