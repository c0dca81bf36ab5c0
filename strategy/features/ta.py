"""TA-Lib generator: function metadata, column naming, batch and streaming execution.

Batch calls the TA-Lib function on whole input arrays; streaming opens a `talib.stream` object
as soon as the batch function would emit its first value and then `update()`s it once per row.
Both start from the same first row, so streaming reproduces batch exactly (TA-Lib 0.8's streams
are the batch code run incrementally), including the EMA-type functions whose value depends on
the whole history.

TA-Lib streams reject NaN inputs while batch functions propagate them, so every TA-Lib input
column is forward-filled first (batch: over the frame; streaming: with the last valid value).
Leading NaNs stay NaN; TA-Lib skips them in both executions ("a leading bar that is NaN in any
input is not history").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import talib
from talib import abstract
from talib import stream as talib_stream

# MAVP averages over a per-bar period series; market frames carry no such column, so `all`
# cannot feed it. It stays usable by name with `inputs: {periods: <column>}`.
EXCLUDED_FROM_ALL: dict[str, str] = {
    "MAVP": "needs a per-bar `periods` input series that market frames do not carry",
}

_PROBE_ROWS = 64


@dataclass(frozen=True, slots=True)
class TalibInfo:
    """What the feature engine needs to know about one TA-Lib function."""

    name: str
    group: str
    input_keys: tuple[str, ...]  # TA-Lib's input name per series ("price", "price0", "high", ...)
    default_columns: tuple[str, ...]  # the frame column each input reads by default
    params: tuple[tuple[str, int | float], ...]  # (name, default), in TA-Lib's order
    outputs: tuple[str, ...]
    integer_outputs: tuple[bool, ...]
    unstable: bool  # TA-Lib flags an unstable period (value depends on the whole history)
    path_dependent: bool  # TA-Lib flags the output as path-dependent (cumulative)

    def param_default(self, name: str) -> int | float:
        return dict(self.params)[name]


def talib_function_names() -> tuple[str, ...]:
    """Return every TA-Lib function name, in TA-Lib's group order."""
    return tuple(talib.get_functions())


def all_preset_functions() -> tuple[str, ...]:
    """Return the functions the `all` preset runs (every function but EXCLUDED_FROM_ALL)."""
    return tuple(name for name in talib_function_names() if name not in EXCLUDED_FROM_ALL)


@cache
def talib_info(name: str) -> TalibInfo:
    """Describe a TA-Lib function by its (upper-case) name; KeyError if there is none."""
    if name not in set(talib.get_functions()):
        raise KeyError(name)
    fn = abstract.Function(name)  # type: ignore[attr-defined]
    keys: list[str] = []
    columns: list[str] = []
    for key, value in fn.input_names.items():
        if isinstance(value, (list, tuple)):
            keys.extend(value)
            columns.extend(value)
        else:
            keys.append(key)
            columns.append(value)
    probe = _probe_outputs(name, len(keys))
    flags = " ".join(fn.info["function_flags"] or ())
    return TalibInfo(
        name=name,
        group=fn.info["group"],
        input_keys=tuple(keys),
        default_columns=tuple(columns),
        params=tuple(fn.parameters.items()),
        outputs=tuple(fn.output_names),
        integer_outputs=tuple(np.issubdtype(out.dtype, np.integer) for out in probe),
        unstable="unstable period" in flags,
        path_dependent="path-dependent" in flags,
    )


def _probe_series(n_inputs: int) -> list[np.ndarray]:
    rows = np.arange(_PROBE_ROWS, dtype=np.float64)
    close = 100.0 + np.sin(rows / 3.0)
    series = [close + 0.5, close + 1.0, close - 1.0, close]  # open, high, low, close-like
    series.append(1000.0 + 10.0 * np.cos(rows))
    return [series[i % len(series)] for i in range(n_inputs)]


def _probe_outputs(name: str, n_inputs: int, **params: float) -> list[np.ndarray]:
    arrays = _probe_series(n_inputs)
    if name == "MAVP":
        arrays[-1] = np.full(_PROBE_ROWS, 10.0)
    result = getattr(talib, name)(*arrays, **params)
    return list(result) if isinstance(result, tuple) else [result]


def check_params(info: TalibInfo, params: Mapping[str, int | float]) -> str | None:
    """Return why TA-Lib rejects these parameter values, or None if it accepts them."""
    try:
        _probe_outputs(info.name, len(info.input_keys), **params)
    except Exception as exc:  # noqa: BLE001 - TA-Lib raises bare Exception with its error code
        return str(exc)
    return None


def lookback(info: TalibInfo, params: Mapping[str, int | float]) -> int:
    """Rows before the first output, TA-Lib's current unstable-period setting included."""
    return int(abstract.Function(info.name, **dict(params)).lookback)  # type: ignore[attr-defined]


def format_param(value: float) -> str:
    """Render a parameter value for a column name: 14 -> '14', 2.0 -> '2', 0.5 -> '0.5'."""
    return format(value, "g")


def output_suffix(function_lower: str, output: str) -> str:
    """Name one output of a function: MACD's macdsignal -> 'signal', RSI's real -> ''."""
    if output in ("real", "integer") or output == function_lower:
        return ""
    if output.startswith(function_lower) and len(output) > len(function_lower):
        return output[len(function_lower) :]
    return output


def column_names(
    info: TalibInfo,
    params: Mapping[str, int | float],
    columns: Sequence[str],
    alias: str | None = None,
) -> tuple[str, ...]:
    """Name a function's output columns from its non-default parameters and inputs."""
    lower = info.name.lower()
    if alias:
        base = alias
    else:
        base = lower
        for default_column, column in zip(info.default_columns, columns, strict=True):
            if column != default_column:
                base += f"_{column}"
        for param, default in info.params:
            if param in params and params[param] != default:
                base += f"_{param}{format_param(params[param])}"
    names = []
    for output in info.outputs:
        suffix = output_suffix(lower, output)
        names.append(f"{base}_{suffix}" if suffix else base)
    return tuple(names)


def forward_fill(values: np.ndarray) -> np.ndarray:
    """Carry the last valid value over NaNs (leading NaNs stay); causal, so no look-ahead."""
    mask = np.isnan(values)
    if not mask.any():
        return values
    index = np.where(mask, 0, np.arange(values.size))
    np.maximum.accumulate(index, out=index)
    return values[index]


@dataclass(frozen=True, slots=True)
class TalibFeature:
    """One TA-Lib function call with fixed parameters on fixed frame columns."""

    info: TalibInfo
    params: tuple[tuple[str, int | float], ...]
    inputs: tuple[str, ...]  # frame column per TA-Lib input, in call order
    columns: tuple[str, ...]
    lookback: int

    @property
    def history(self) -> int:
        return 0  # the stream object holds its own state

    @property
    def column_lookbacks(self) -> tuple[int, ...]:
        return (self.lookback,) * len(self.columns)

    @property
    def fill_values(self) -> tuple[float, ...]:
        # TA-Lib pads integer outputs (CDL*, *INDEX, HT_TRENDMODE) with 0, others with NaN.
        return tuple(0.0 if is_int else math.nan for is_int in self.info.integer_outputs)

    def batch(self, filled: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Compute every output over whole forward-filled input arrays."""
        result = getattr(talib, self.info.name)(
            *(filled[column] for column in self.inputs), **dict(self.params)
        )
        outputs = result if isinstance(result, tuple) else (result,)
        return [np.asarray(out, dtype=np.float64) for out in outputs]

    def streamer(self) -> TalibStreamer:
        return TalibStreamer(self)


class TalibStreamer:
    """Streaming state of one TalibFeature: pending rows until it opens, then a talib stream."""

    __slots__ = ("_factory", "_feature", "_fill", "_needed", "_pending", "_stream")

    def __init__(self, feature: TalibFeature) -> None:
        self._feature = feature
        fill = feature.fill_values
        self._fill: float | tuple[float, ...] = fill[0] if len(fill) == 1 else fill
        self._pending: list[tuple[float, ...]] = []
        self._stream: object | None = None
        self._needed = feature.lookback + 1
        self._factory = getattr(talib_stream, feature.info.name)

    @property
    def warm(self) -> bool:
        return self._stream is not None

    def update(self, args: tuple[float, ...]) -> float | tuple[float, ...]:
        """Take one row's forward-filled inputs; return this row's output(s)."""
        stream = self._stream
        if stream is not None:
            return stream.update(*args)  # type: ignore[attr-defined]
        if any(value != value for value in args):  # noqa: PLR0124 - NaN: before the first valid bar
            return self._fill
        self._pending.append(args)
        if len(self._pending) < self._needed:
            return self._fill
        history = np.array(list(zip(*self._pending, strict=True)), dtype=np.float64)
        self._pending = []
        self._open(list(history))
        return self._stream.value  # type: ignore[union-attr]

    def prime(self, filled: Sequence[np.ndarray]) -> None:
        """Absorb many rows at once (forward-filled input arrays), as repeated update() would."""
        n = filled[0].size if filled else 0
        if n == 0:
            return
        if self._stream is not None:
            for row in zip(*(column.tolist() for column in filled), strict=True):
                self._stream.update(*row)  # type: ignore[attr-defined]
            return
        if self._pending:  # inputs are forward-filled, so every later row is valid too
            history = [
                np.concatenate([np.array(old, dtype=np.float64), column])
                for old, column in zip(zip(*self._pending, strict=True), filled, strict=True)
            ]
        else:
            valid = ~np.isnan(np.vstack(filled)).any(axis=0)
            if not valid.any():
                return
            start = int(np.argmax(valid))
            history = [column[start:] for column in filled]
        if history[0].size >= self._needed:
            self._pending = []
            self._open(history)
        else:
            self._pending = list(zip(*(h.tolist() for h in history), strict=True))

    def _open(self, history: list[np.ndarray]) -> None:
        self._stream = self._factory(*history, **dict(self._feature.params))
