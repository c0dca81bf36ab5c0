"""Compile a feature set's config into executable features: columns, look-backs, warm-up, hash.

A `FeaturePlan` is the single definition both executions run: `compute_batch` calls each
feature's `batch`, `StreamingFeatures` each feature's `streamer().update`. Column order is the
order of the generators in the config and, inside a generator, the order docs/features.md
documents; the streaming vector uses exactly this order.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

import numpy as np
import pandas as pd
import talib

from strategy.features import ta
from strategy.features.book import BookConfigError, build_book_feature
from strategy.features.custom import CustomFeature, CustomFunctionError, declared_contract
from strategy.features.schema import FRAME_COLUMNS
from strategy.features.spec import (
    BookGenerator,
    CustomGenerator,
    FeatureSetSpec,
    Generator,
    StatsGenerator,
    TalibGenerator,
)
from strategy.features.stats import build_stats_feature


class Feature(Protocol):
    """One compiled generator (or one TA-Lib call): what both executions need."""

    @property
    def columns(self) -> tuple[str, ...]: ...

    @property
    def inputs(self) -> tuple[str, ...]: ...  # frame columns read

    @property
    def lookback(self) -> int: ...  # rows before the current one its first value needs

    @property
    def history(self) -> int: ...  # input rows streaming must keep for it (0: none)

    @property
    def column_lookbacks(self) -> tuple[int, ...]: ...  # per column, <= lookback

    def batch(self, data: Mapping[str, np.ndarray]) -> list[np.ndarray]: ...

    def streamer(self) -> Any: ...


class PlanError(ValueError):
    """A generator cannot be compiled; carries where in the set it is."""

    def __init__(self, generator_index: int, loc: tuple[str | int, ...], reason: str) -> None:
        super().__init__(f"generators[{generator_index}]: {reason}")
        self.generator_index = generator_index
        self.loc = loc
        self.reason = reason


@dataclass(frozen=True)
class FeaturePlan:
    """A compiled feature set: the features, their columns, look-backs, warm-up and hash."""

    spec: FeatureSetSpec
    features: tuple[Feature, ...]
    columns: tuple[str, ...]
    lookbacks: tuple[int, ...]  # per column
    inputs: tuple[str, ...]  # every frame column any feature reads
    talib_inputs: tuple[str, ...]  # the columns forward-filled for TA-Lib
    history_rows: int  # input rows the streaming side keeps
    warmup_rows: int  # rows after which every feature has its first value
    versions: Mapping[str, str] = field(default_factory=dict)
    hash: str = ""

    @property
    def frequency(self) -> str:
        return self.spec.frequency

    def metadata(self) -> dict[str, Any]:
        """Describe the feature set exactly (stored next to features and model bundles)."""
        return {
            "name": self.spec.label,
            "frequency": self.spec.frequency,
            "hash": self.hash,
            "warmup_rows": self.warmup_rows,
            "columns": list(self.columns),
            "lookbacks": dict(zip(self.columns, self.lookbacks, strict=True)),
            "versions": dict(self.versions),
            "definition": self.spec.model_dump(mode="json", exclude={"name"}),
        }


def as_plan(feature_set: FeatureSetSpec | FeaturePlan) -> FeaturePlan:
    """Compile a spec, or pass a plan through."""
    if isinstance(feature_set, FeaturePlan):
        return feature_set
    return compile_feature_set(feature_set)


def compile_feature_set(
    spec: FeatureSetSpec, versions: Mapping[str, str] | None = None
) -> FeaturePlan:
    """Compile every generator of a set; PlanError names the generator that cannot run."""
    owned: list[tuple[int, Feature]] = []
    for index, generator in enumerate(spec.generators):
        owned.extend((index, f) for f in _compile_generator(index, generator, spec.frequency))
    columns: list[str] = []
    lookbacks: list[int] = []
    owner: dict[str, int] = {}
    for index, feature in owned:
        for column, lookback in zip(feature.columns, feature.column_lookbacks, strict=True):
            if column in owner:
                raise PlanError(
                    index,
                    (),
                    f"column {column!r} is also produced by generators[{owner[column]}] "
                    "(rename one with `alias`, or change its parameters)",
                )
            owner[column] = index
            columns.append(column)
            lookbacks.append(lookback)
    features = tuple(feature for _, feature in owned)
    inputs = tuple(dict.fromkeys(c for feature in features for c in feature.inputs))
    talib_inputs = tuple(
        dict.fromkeys(c for f in features if isinstance(f, ta.TalibFeature) for c in f.inputs)
    )
    versions = dict(library_versions() if versions is None else versions)
    return FeaturePlan(
        spec=spec,
        features=features,
        columns=tuple(columns),
        lookbacks=tuple(lookbacks),
        inputs=inputs,
        talib_inputs=talib_inputs,
        history_rows=max((f.history for f in features), default=0),
        warmup_rows=max(lookbacks, default=0) + 1,
        versions=versions,
        hash=_hash(spec, [f.lookback for f in features], versions),
    )


def _compile_generator(index: int, generator: Generator, frequency: str) -> list[Feature]:
    if isinstance(generator, TalibGenerator):
        return [*_compile_talib(generator)]
    if isinstance(generator, BookGenerator):
        try:
            return [
                build_book_feature(
                    frequency,
                    generator.features,
                    generator.bands_bp,
                    generator.microprice_band_bp,
                    generator.flow_window,
                )
            ]
        except BookConfigError as exc:
            raise PlanError(index, (exc.field,), str(exc)) from None
    if isinstance(generator, StatsGenerator):
        return [
            build_stats_feature(
                generator.columns, generator.transform, generator.windows, generator.stats
            )
        ]
    if isinstance(generator, CustomGenerator):
        try:
            function, lookback, columns = declared_contract(generator)
        except CustomFunctionError as exc:
            raise PlanError(index, (exc.field,), str(exc)) from None
        known = FRAME_COLUMNS[frequency]
        wanted = generator.inputs or known
        inputs = tuple(c for c in known if c in wanted)
        return [
            CustomFeature(
                path=generator.function,
                function=function,
                params=tuple(generator.params.items()),
                inputs=inputs,
                columns=columns,
                lookback=lookback,
            )
        ]
    raise TypeError(f"unknown generator {generator!r}")


def _compile_talib(generator: TalibGenerator) -> list[ta.TalibFeature]:
    if generator.preset == "all":
        names = [n for n in ta.all_preset_functions() if n not in generator.exclude]
        calls: list[tuple[str, dict[str, int | float]]] = [(name, {}) for name in names]
    else:
        assert generator.name is not None  # the spec validator requires name or preset
        calls = [(generator.name, params) for params in generator.param_sets()]
    features = []
    for name, params in calls:
        info = ta.talib_info(name)
        typed = {
            key: (float(value) if isinstance(info.param_default(key), float) else int(value))
            for key, value in params.items()
        }
        columns = tuple(
            generator.inputs.get(key) or generator.inputs.get(default) or default
            for key, default in zip(info.input_keys, info.default_columns, strict=True)
        )
        features.append(
            ta.TalibFeature(
                info=info,
                params=tuple(typed.items()),
                inputs=columns,
                columns=ta.column_names(info, typed, columns, generator.alias),
                lookback=ta.lookback(info, typed),
            )
        )
    return features


@lru_cache(maxsize=1)
def library_versions() -> Mapping[str, str]:
    """Return the versions that identify a feature set's values alongside its definition."""
    ta_c = talib.__ta_version__
    ta_c = ta_c.decode() if isinstance(ta_c, bytes) else str(ta_c)
    try:
        tickloop = importlib.metadata.version("tickloop")
    except importlib.metadata.PackageNotFoundError:
        tickloop = "unknown"
    return {
        "talib": talib.__version__,
        "ta_lib_c": ta_c.split(" ")[0],
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "tickloop": tickloop,
    }


def feature_set_hash(spec: FeatureSetSpec, versions: Mapping[str, str] | None = None) -> str:
    """Hash a feature set's definition, resolved look-backs and library versions (sha256 hex)."""
    return compile_feature_set(spec, versions).hash


def _hash(spec: FeatureSetSpec, lookbacks: list[int], versions: Mapping[str, str]) -> str:
    payload = {
        "frequency": spec.frequency,
        "generators": [g.model_dump(mode="json") for g in spec.generators],
        # Look-backs capture TA-Lib's process-wide unstable-period settings, which change values.
        "lookbacks": lookbacks,
        "custom_sources": _custom_sources(spec),
        "versions": dict(versions),
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _custom_sources(spec: FeatureSetSpec) -> list[str]:
    # Editing a custom function's code changes its values, so its source is part of the hash.
    sources = []
    for generator in spec.generators:
        if isinstance(generator, CustomGenerator):
            function, _, _ = declared_contract(generator)
            try:
                source = inspect.getsource(function)
            except (OSError, TypeError):
                source = generator.function
            sources.append(hashlib.sha256(source.encode()).hexdigest())
    return sources
