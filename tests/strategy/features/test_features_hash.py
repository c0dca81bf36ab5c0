"""The feature-set hash: stable for one definition, different when values could differ."""

from __future__ import annotations

import talib

from strategy.features import (
    FeatureSetSpec,
    compile_feature_set,
    feature_set_hash,
    library_versions,
)


def spec(*generators: dict, name: str | None = None) -> FeatureSetSpec:
    return FeatureSetSpec.model_validate(
        {"name": name, "frequency": "minute", "generators": list(generators)}
    )


BASE = (
    {"kind": "talib", "name": "BBANDS", "params": {"timeperiod": 10, "nbdevup": 2.0}},
    {"kind": "stats", "windows": [30]},
)


def test_same_definition_same_hash() -> None:
    first = feature_set_hash(spec(*BASE))
    assert first == feature_set_hash(spec(*BASE))
    assert len(first) == 64 and int(first, 16) >= 0
    reordered = (
        {"kind": "talib", "name": "bbands", "params": {"nbdevup": 2.0, "timeperiod": 10}},
        {"windows": [30], "kind": "stats"},
    )
    assert feature_set_hash(spec(*reordered)) == first
    assert feature_set_hash(spec(*BASE, name="renamed")) == first  # names do not change values


def test_parameter_change_changes_hash() -> None:
    changed = ({**BASE[0], "params": {"timeperiod": 11, "nbdevup": 2.0}}, BASE[1])
    assert feature_set_hash(spec(*changed)) != feature_set_hash(spec(*BASE))
    changed_stats = (BASE[0], {"kind": "stats", "windows": [31]})
    assert feature_set_hash(spec(*changed_stats)) != feature_set_hash(spec(*BASE))


def test_library_version_change_changes_hash() -> None:
    versions = dict(library_versions())
    assert set(versions) == {"talib", "ta_lib_c", "numpy", "pandas", "tickloop"}
    assert versions["talib"] == talib.__version__
    base = feature_set_hash(spec(*BASE), versions)
    assert base == feature_set_hash(spec(*BASE))
    for library, version in versions.items():
        bumped = {**versions, library: version + ".post1"}
        assert feature_set_hash(spec(*BASE), bumped) != base, library


def test_talib_unstable_period_changes_lookback_warmup_and_hash() -> None:
    ema = spec({"kind": "talib", "name": "EMA", "params": {"timeperiod": 10}})
    before = compile_feature_set(ema)
    saved = talib.get_unstable_period("EMA")
    try:
        talib.set_unstable_period("EMA", saved + 25)
        after = compile_feature_set(ema)
    finally:
        talib.set_unstable_period("EMA", saved)
    assert after.warmup_rows == before.warmup_rows + 25 == 10 + 25
    assert after.hash != before.hash
    assert compile_feature_set(ema).hash == before.hash


def test_metadata_describes_the_set() -> None:
    plan = compile_feature_set(spec(*BASE))
    meta = plan.metadata()
    assert meta["hash"] == plan.hash == feature_set_hash(spec(*BASE))
    assert meta["warmup_rows"] == 31  # stats: 30 log returns need 31 closes
    assert meta["columns"] == list(plan.columns)
    assert meta["lookbacks"]["bbands_timeperiod10_upperband"] == 9
    assert meta["versions"] == dict(library_versions())
