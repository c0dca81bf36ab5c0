"""The `features:` config section: feature sets of generators, validated at load.

Embed `FeaturesConfig` as the `features` field of the application config. Every error names
its YAML path, e.g. `features.sets[0].generators[2].name: 'RSX' is not a TA-Lib function`
(pydantic reports the location as ('sets', 0, 'generators', 2, 'name') under `features`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, NoReturn

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    StrictFloat,
    StrictInt,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from strategy.features import ta
from strategy.features.schema import FRAME_COLUMNS, FREQUENCY_NOUN, Frequency

BookFeatureName = Literal[
    "imbalance",
    "depth_ratio",
    "spread_bp",
    "microprice_offset_bp",
    "taker_buy_share",
    "trade_intensity",
]
StatName = Literal[
    "mean",
    "std",
    "skew",
    "kurt",
    "slope",
    "area_above_mean",
    "argmax_pos",
    "longest_run_below_mean",
]
Transform = Literal["level", "diff", "log_return"]
ParamValue = StrictInt | StrictFloat

_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")


def _message(text: str) -> PydanticCustomError:
    # The text goes through the context so braces in user input are not read as a template.
    return PydanticCustomError("features", "{detail}", {"detail": text})


def fail(loc: tuple[str | int, ...], text: str, value: Any = None) -> NoReturn:
    """Raise a validation error at `loc` below the model being validated."""
    detail = InitErrorDetails(type=_message(text), loc=loc, input=value)
    raise ValidationError.from_exception_data("features", [detail])


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TalibGenerator(_Spec):
    """A TA-Lib function by name (with parameters, windows and input columns), or a preset."""

    kind: Literal["talib"] = "talib"
    name: str | None = None
    preset: Literal["all"] | None = None
    params: dict[str, ParamValue] = Field(default_factory=dict)
    windows: tuple[PositiveInt, ...] = ()
    inputs: dict[str, str] = Field(default_factory=dict)
    exclude: tuple[str, ...] = ()
    alias: str | None = None

    @field_validator("name")
    @classmethod
    def _known_function(cls, name: str | None) -> str | None:
        if name is None:
            return None
        upper = name.upper()
        if upper not in set(ta.talib_function_names()):
            close = difflib.get_close_matches(upper, ta.talib_function_names(), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise _message(f"{name!r} is not a TA-Lib function{hint}")
        return upper

    @field_validator("exclude")
    @classmethod
    def _known_excludes(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        known = set(ta.talib_function_names())
        for name in names:
            if name.upper() not in known:
                raise _message(f"{name!r} is not a TA-Lib function")
        return tuple(name.upper() for name in names)

    @model_validator(mode="after")
    def _consistent(self) -> TalibGenerator:
        if (self.name is None) == (self.preset is None):
            fail((), "give exactly one of `name` (a TA-Lib function) or `preset: all`")
        if self.preset is not None:
            for field in ("params", "windows", "alias"):
                if getattr(self, field):
                    fail((field,), f"`{field}` applies to one named function, not to a preset")
            roles = {
                key
                for name in ta.all_preset_functions()
                for key in (*ta.talib_info(name).input_keys, *ta.talib_info(name).default_columns)
            }
            for role in self.inputs:
                if role not in roles:
                    fail(("inputs", role), f"{role!r} is not an input of any TA-Lib function")
            return self
        if self.exclude:
            fail(("exclude",), "`exclude` applies to `preset: all`")
        info = ta.talib_info(self.name)  # type: ignore[arg-type]
        self._check_params(info)
        for role in self.inputs:
            if role not in info.input_keys and role not in info.default_columns:
                expected = ", ".join(dict.fromkeys(info.input_keys + info.default_columns))
                fail(("inputs", role), f"{role!r} is not an input of {info.name} ({expected})")
        if "periods" in info.input_keys and "periods" not in self.inputs:
            fail(("inputs",), f"{info.name} needs `inputs: {{periods: <column>}}`")
        return self

    def _check_params(self, info: ta.TalibInfo) -> None:
        defaults = dict(info.params)
        for key, value in self.params.items():
            if key not in defaults:
                expected = ", ".join(defaults) or "none"
                fail(("params", key), f"{key!r} is not a parameter of {info.name} ({expected})")
            if isinstance(defaults[key], int) and not isinstance(value, int):
                fail(("params", key), f"{info.name} {key} must be an integer, got {value!r}")
        if self.windows:
            if "timeperiod" not in defaults:
                fail(("windows",), f"{info.name} has no `timeperiod` for windows to set")
            if "timeperiod" in self.params:
                fail(("windows",), "give the period either in `windows` or in `params`, not both")
        for params in self.param_sets():
            reason = ta.check_params(info, params)
            if reason is not None:
                fail(("params",), f"TA-Lib rejects {info.name} with {params}: {reason}")

    def param_sets(self) -> list[dict[str, int | float]]:
        """Return one parameter dict per instance: one per window, or just `params`."""
        if not self.windows:
            return [dict(self.params)]
        return [{**self.params, "timeperiod": window} for window in self.windows]


class BookGenerator(_Spec):
    """Order-book and trade-flow features from the depth, quote and volume columns."""

    kind: Literal["book"] = "book"
    features: tuple[BookFeatureName, ...] | None = None  # None: all the frequency supports
    bands_bp: tuple[PositiveInt, ...] | None = None  # None: every band the frequency has
    microprice_band_bp: PositiveInt = 30
    flow_window: PositiveInt = 1


class StatsGenerator(_Spec):
    """Rolling statistics of (transformed) frame columns over windows of rows."""

    kind: Literal["stats"] = "stats"
    columns: tuple[str, ...] = ("close",)
    transform: Transform = "log_return"
    windows: tuple[Annotated[int, Field(ge=2)], ...] = (60,)
    stats: tuple[StatName, ...] = (
        "mean",
        "std",
        "skew",
        "kurt",
        "slope",
        "area_above_mean",
        "argmax_pos",
        "longest_run_below_mean",
    )


class CustomGenerator(_Spec):
    """A user function `package.module:function` returning named columns (see custom.py)."""

    kind: Literal["custom"] = "custom"
    function: str
    params: dict[str, Any] = Field(default_factory=dict)
    lookback: Annotated[int, Field(ge=0)] | None = None
    columns: tuple[str, ...] | None = None
    inputs: tuple[str, ...] | None = None  # frame columns it reads; None: all of them

    @field_validator("function")
    @classmethod
    def _importable(cls, path: str) -> str:
        from strategy.features.custom import CustomFunctionError, load_function

        if not _IMPORT_PATH.match(path):
            raise _message(f"{path!r} is not an import path of the form package.module:function")
        try:
            load_function(path)
        except CustomFunctionError as exc:
            raise _message(str(exc)) from None
        return path

    @model_validator(mode="after")
    def _declared(self) -> CustomGenerator:
        from strategy.features.custom import CustomFunctionError, declared_contract

        try:
            declared_contract(self)
        except CustomFunctionError as exc:
            fail((exc.field,), str(exc))
        return self


Generator = TalibGenerator | BookGenerator | StatsGenerator | CustomGenerator
_BY_KIND: dict[str, type[_Spec]] = {
    "talib": TalibGenerator,
    "book": BookGenerator,
    "stats": StatsGenerator,
    "custom": CustomGenerator,
}


def _dispatch_on_kind(value: Any, handler: Callable[[Any], Any]) -> Any:
    # A plain discriminated union would put the tag in error paths (generators.2.talib.name);
    # dispatching by hand keeps them as the YAML reads (generators[2].name).
    if isinstance(value, tuple(_BY_KIND.values())):
        return value
    if not isinstance(value, Mapping):
        raise _message("a generator is a mapping with a `kind` (talib, book, stats, custom)")
    kind = value.get("kind")
    if not isinstance(kind, str) or kind not in _BY_KIND:  # a list or a mapping is unhashable
        fail(("kind",), f"{kind!r} is not a generator kind (talib, book, stats, custom)", kind)
    return _BY_KIND[kind].model_validate(value)


GeneratorSpec = Annotated[Generator, WrapValidator(_dispatch_on_kind)]


class FeatureSetSpec(_Spec):
    """Generators run over one input frequency: `second` rows or `minute` candles."""

    name: str | None = None  # defaults to the frequency
    frequency: Frequency
    generators: tuple[GeneratorSpec, ...]

    @field_validator("generators")
    @classmethod
    def _not_empty(cls, generators: tuple[Generator, ...]) -> tuple[Generator, ...]:
        # Checked here rather than with min_length, which pydantic also reports (as a spurious
        # "0 items") whenever one generator fails to validate.
        if not generators:
            raise _message("a feature set needs at least one generator")
        return generators

    @property
    def label(self) -> str:
        return self.name or self.frequency

    @model_validator(mode="after")
    def _columns_exist(self) -> FeatureSetSpec:
        from strategy.features.plan import PlanError, compile_feature_set

        known = FRAME_COLUMNS[self.frequency]
        for index, generator in enumerate(self.generators):
            for loc, column in _input_columns(generator):
                if column not in known:
                    fail(
                        ("generators", index, *loc),
                        f"unknown column {column!r} for {FREQUENCY_NOUN[self.frequency]} "
                        f"(columns: {', '.join(known)})",
                        column,
                    )
        try:
            compile_feature_set(self)
        except PlanError as exc:
            fail(("generators", exc.generator_index, *exc.loc), exc.reason)
        return self


def _input_columns(generator: Generator) -> list[tuple[tuple[str | int, ...], str]]:
    if isinstance(generator, TalibGenerator):
        return [(("inputs", role), column) for role, column in generator.inputs.items()]
    if isinstance(generator, StatsGenerator):
        return [(("columns", i), column) for i, column in enumerate(generator.columns)]
    if isinstance(generator, CustomGenerator) and generator.inputs is not None:
        return [(("inputs", i), column) for i, column in enumerate(generator.inputs)]
    return []


def default_feature_sets() -> tuple[FeatureSetSpec, ...]:
    """Return the feature sets a new user gets: TA-Lib battery on candles, book + stats."""
    return (
        FeatureSetSpec(
            frequency="minute",
            generators=(
                TalibGenerator(preset="all"),
                BookGenerator(),
                StatsGenerator(columns=("close",), transform="log_return", windows=(15, 60)),
            ),
        ),
        FeatureSetSpec(
            frequency="second",
            generators=(
                BookGenerator(flow_window=10),
                StatsGenerator(columns=("close",), transform="log_return", windows=(60, 300)),
            ),
        ),
    )


class FeaturesConfig(_Spec):
    """The `features:` section: the feature sets computed for every traded symbol."""

    sets: tuple[FeatureSetSpec, ...] = Field(default_factory=default_feature_sets)

    @field_validator("sets")
    @classmethod
    def _some_set(cls, sets: tuple[FeatureSetSpec, ...]) -> tuple[FeatureSetSpec, ...]:
        if not sets:
            raise _message("give at least one feature set (or leave `sets` out for the default)")
        return sets

    @model_validator(mode="after")
    def _unique_labels(self) -> FeaturesConfig:
        seen: dict[str, int] = {}
        for index, feature_set in enumerate(self.sets):
            if feature_set.label in seen:
                fail(
                    ("sets", index, "name"),
                    f"set name {feature_set.label!r} is also used by sets[{seen[feature_set.label]}]",
                )
            seen[feature_set.label] = index
        return self

    def get(self, name_or_frequency: str) -> FeatureSetSpec:
        """Return the set with this name, else the first set of this frequency."""
        for feature_set in self.sets:
            if feature_set.label == name_or_frequency:
                return feature_set
        for feature_set in self.sets:
            if feature_set.frequency == name_or_frequency:
                return feature_set
        labels = ", ".join(s.label for s in self.sets)
        raise KeyError(f"no feature set named {name_or_frequency!r} (sets: {labels})")
