"""Custom generators: a user function named by import path `package.module:function`.

Contract (docs/features.md, "custom"):

    @feature_function(lookback=lambda p: p["window"], columns=lambda p: [f"zret_{p['window']}"])
    def zscore(frame: pd.DataFrame, params: Mapping[str, Any]) -> pd.DataFrame: ...

* `frame` holds the input columns (`inputs:` in the config, default: every column of the
  frequency) as float64, one row per row, index 0..n-1, oldest first.
* It returns a DataFrame (or a mapping of name -> array) with exactly the declared columns and
  one value per input row.
* The value of row t may depend only on rows t - lookback .. t (the declared look-back). This
  is what lets it run streaming: each new row, the engine calls the function on the last
  lookback + 1 rows and keeps the last output row. `check_parity` catches a function that
  breaks the promise (peeks ahead or remembers more than its look-back).
* `lookback` and `columns` are declared with the decorator (a value, or a function of the
  params), or in the config (`lookback:` / `columns:`), which wins.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from strategy.features.spec import CustomGenerator

LOOKBACK_ATTR = "feature_lookback"
COLUMNS_ATTR = "feature_columns"

CustomFunction = Callable[[pd.DataFrame, Mapping[str, Any]], Any]


class CustomFunctionError(ValueError):
    """A custom generator's function cannot be loaded or breaks its contract."""

    def __init__(self, reason: str, field: str = "function") -> None:
        super().__init__(reason)
        self.field = field


def feature_function(
    *,
    lookback: int | Callable[[Mapping[str, Any]], int],
    columns: Sequence[str] | Callable[[Mapping[str, Any]], Sequence[str]],
) -> Callable[[CustomFunction], CustomFunction]:
    """Declare a custom feature function's look-back (rows) and output columns."""

    def mark(function: CustomFunction) -> CustomFunction:
        setattr(function, LOOKBACK_ATTR, lookback)
        setattr(function, COLUMNS_ATTR, columns)
        return function

    return mark


def load_function(path: str) -> CustomFunction:
    """Import `package.module:function`; CustomFunctionError says what went wrong."""
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any failure importing user code is a config error
        raise CustomFunctionError(
            f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}"
        ) from None
    function = getattr(module, attribute, None)
    if function is None:
        raise CustomFunctionError(f"module {module_name!r} has no attribute {attribute!r}")
    if not callable(function):
        raise CustomFunctionError(f"{path!r} is not callable")
    return function  # type: ignore[no-any-return]


def declared_contract(spec: CustomGenerator) -> tuple[CustomFunction, int, tuple[str, ...]]:
    """Return the function, its look-back and its column names, config overriding decorator."""
    function = load_function(spec.function)
    params = dict(spec.params)
    lookback: Any = spec.lookback
    if lookback is None:
        lookback = getattr(function, LOOKBACK_ATTR, None)
        if callable(lookback):
            lookback = _call_declaration(lookback, params, "lookback")
    if lookback is None:
        raise CustomFunctionError(
            f"{spec.function} declares no look-back: decorate it with "
            "@feature_function(lookback=..., columns=...) or set `lookback:`",
            field="lookback",
        )
    if isinstance(lookback, bool) or not isinstance(lookback, int) or lookback < 0:
        raise CustomFunctionError(
            f"look-back must be an integer >= 0, got {lookback!r}", "lookback"
        )
    columns: Any = spec.columns
    if columns is None:
        columns = getattr(function, COLUMNS_ATTR, None)
        if callable(columns):
            columns = _call_declaration(columns, params, "columns")
    if not columns or isinstance(columns, str):
        raise CustomFunctionError(
            f"{spec.function} declares no output columns: decorate it with "
            "@feature_function(lookback=..., columns=[...]) or set `columns:`",
            field="columns",
        )
    names = tuple(str(name) for name in columns)
    if len(set(names)) != len(names):
        raise CustomFunctionError(f"duplicate column names in {list(names)}", "columns")
    return function, lookback, names


def _call_declaration(declaration: Callable[..., Any], params: dict[str, Any], field: str) -> Any:
    try:
        return declaration(params)
    except Exception as exc:  # noqa: BLE001 - user code: report whatever it raised
        raise CustomFunctionError(
            f"declaring {field} from params {params} failed: {type(exc).__name__}: {exc}", field
        ) from None


@dataclass(frozen=True, slots=True)
class CustomFeature:
    """Compiled custom generator."""

    path: str
    function: CustomFunction
    params: tuple[tuple[str, Any], ...]
    inputs: tuple[str, ...]
    columns: tuple[str, ...]
    lookback: int

    @property
    def history(self) -> int:
        return self.lookback + 1

    @property
    def column_lookbacks(self) -> tuple[int, ...]:
        return (self.lookback,) * len(self.columns)

    def batch(self, data: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Call the function on the whole frame and check what it returns."""
        n = data[self.inputs[0]].size
        frame = pd.DataFrame({column: data[column] for column in self.inputs})
        return self._columns_of(self.function(frame, dict(self.params)), n)

    def _columns_of(self, result: Any, n: int) -> list[np.ndarray]:
        if isinstance(result, pd.DataFrame):
            produced = [str(c) for c in result.columns]
            get = lambda name: result[name].to_numpy()
        elif isinstance(result, Mapping):
            produced = [str(c) for c in result]
            get = lambda name: np.asarray(result[name])
        else:
            raise CustomFunctionError(
                f"{self.path} returned {type(result).__name__}, expected a DataFrame"
            )
        if produced != list(self.columns):
            raise CustomFunctionError(
                f"{self.path} returned columns {produced}, declared {list(self.columns)}"
            )
        arrays = [np.asarray(get(name), dtype=np.float64).reshape(-1) for name in self.columns]
        for name, array in zip(self.columns, arrays, strict=True):
            if array.size != n:
                raise CustomFunctionError(
                    f"{self.path} returned {array.size} values for {name!r}, expected {n}"
                )
        return arrays

    def streamer(self) -> CustomStreamer:
        return CustomStreamer(self)


class CustomStreamer:
    """Run the function over the last lookback + 1 rows and keep the last output row."""

    __slots__ = ("_feature", "_nan")

    def __init__(self, feature: CustomFeature) -> None:
        self._feature = feature
        self._nan = (math.nan,) * len(feature.columns)

    def update(self, args: tuple[float, ...], history: object) -> tuple[float, ...]:
        """Compute the current row's values from the input history."""
        f = self._feature
        rows = min(history.count, f.lookback + 1)  # type: ignore[attr-defined]
        data = {column: history.window(column, rows) for column in f.inputs}  # type: ignore[attr-defined]
        frame = pd.DataFrame(data)
        arrays = f._columns_of(f.function(frame, dict(f.params)), rows)
        return tuple(float(array[-1]) for array in arrays)
