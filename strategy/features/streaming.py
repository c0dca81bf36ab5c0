"""Streaming execution: one new row (or candle) in, the feature vector for that row out.

`StreamingFeatures` holds the state of one symbol's feature set: a talib stream object per
TA-Lib call and a short history of the input columns for the windowed generators. Feed it
every row, in order, from the same first row a batch computation would start at, and its
vectors equal `compute_batch` row for row (`check_parity` proves it on any frame).

Vector order is `columns` (= the plan's column order, documented in docs/features.md).
Nothing is returned before the set is warm: every feature has seen its look-back, and every
TA-Lib stream has opened (a TA-Lib input that starts NaN delays its opening).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
import pandas as pd

from strategy.features.batch import input_arrays
from strategy.features.plan import FeaturePlan, as_plan
from strategy.features.spec import FeatureSetSpec
from strategy.features.ta import TalibFeature, forward_fill


class RowRing(Protocol):
    """The part of engine.ring.ColumnRing streaming reads: the newest value of a column."""

    def last(self, column: str) -> Any: ...


class InputHistory:
    """The last `capacity` rows of some input columns; each window is one contiguous view."""

    __slots__ = ("_capacity", "_data", "_index", "_last", "count")

    def __init__(self, columns: tuple[str, ...], capacity: int) -> None:
        self._index = {column: i for i, column in enumerate(columns)}
        self._capacity = max(capacity, 1)
        # Every row is written twice, at p and p + capacity, so the newest n rows always sit
        # in one slice [last + capacity - n + 1, last + capacity] without wrapping.
        self._data = np.full((len(columns), 2 * self._capacity), np.nan)
        self._last = self._capacity - 1
        self.count = 0

    def append(self, values: np.ndarray) -> None:
        """Add one row (values in column order)."""
        position = (self._last + 1) % self._capacity
        self._data[:, position] = values
        self._data[:, position + self._capacity] = values
        self._last = position
        self.count += 1

    def extend(self, block: np.ndarray) -> None:
        """Add many rows at once ((columns, rows) array, oldest first)."""
        for row in block[:, -self._capacity :].T:
            self.append(row)
        self.count += max(block.shape[1] - self._capacity, 0)

    def window(self, column: str, n: int) -> np.ndarray:
        """Return the newest n values of a column, oldest first (a view: do not write)."""
        if n > min(self.count, self._capacity):
            raise ValueError(f"asked for {n} rows, history holds {min(self.count, self._capacity)}")
        end = self._last + self._capacity + 1
        return self._data[self._index[column], end - n : end]


class StreamingFeatures:
    """One symbol's feature set, updated row by row (or candle by candle)."""

    def __init__(self, feature_set: FeatureSetSpec | FeaturePlan) -> None:
        plan = as_plan(feature_set)
        self.plan = plan
        self.columns: tuple[str, ...] = plan.columns
        self.warmup_rows: int = plan.warmup_rows
        self.rows_seen = 0
        self._inputs = plan.inputs
        position = {column: i for i, column in enumerate(plan.inputs)}
        self._talib_positions = [position[c] for c in plan.talib_inputs]
        self._talib_slot = {column: i for i, column in enumerate(plan.talib_inputs)}
        self._last_valid = [math.nan] * len(plan.talib_inputs)
        self._history = InputHistory(plan.inputs, plan.history_rows) if plan.history_rows else None
        self._out = np.full(len(plan.columns), np.nan)
        self._talib_signatures: dict[tuple[str, ...], tuple[int, ...]] = {}
        self._other_signatures: dict[tuple[str, ...], tuple[int, ...]] = {}
        self._steps: list[tuple[bool, Any, tuple[str, ...], int, int]] = []
        self._talib_streamers = []
        start = 0
        for feature in plan.features:
            streamer = feature.streamer()
            width = len(feature.columns)
            is_talib = isinstance(feature, TalibFeature)
            if is_talib:
                self._talib_signatures[feature.inputs] = tuple(
                    self._talib_slot[c] for c in feature.inputs
                )
                self._talib_streamers.append(streamer)
            else:
                self._other_signatures[feature.inputs] = tuple(position[c] for c in feature.inputs)
            self._steps.append((is_talib, streamer.update, feature.inputs, start, width))
            start += width
        self._warm = False

    @property
    def warm(self) -> bool:
        """True once every feature has its look-back (and every TA-Lib stream is open)."""
        if not self._warm and self.rows_seen >= self.warmup_rows:
            self._warm = all(s.warm for s in self._talib_streamers)
        return self._warm

    def update(self, row: Mapping[str, Any]) -> np.ndarray | None:
        """Add the newest row; return its feature vector (in `columns` order) once warm."""
        values = [float(row[column]) for column in self._inputs]
        self._step(values)
        return self._out.copy() if self.warm else None

    def update_from_ring(self, ring: RowRing) -> np.ndarray | None:
        """Add the row just appended to a ColumnRing-like buffer (reads `ring.last(col)`)."""
        return self.update({column: ring.last(column) for column in self._inputs})

    def current(self) -> np.ndarray:
        """Return the newest row's vector even before warm-up (NaN where not yet defined)."""
        return self._out.copy()

    def _step(self, values: list[float]) -> None:
        last_valid = self._last_valid
        for slot, index in enumerate(self._talib_positions):
            value = values[index]
            if value == value:  # noqa: PLR0124 - NaN keeps the last valid value for TA-Lib
                last_valid[slot] = value
        talib_args = {
            key: tuple(last_valid[i] for i in slots)
            for key, slots in self._talib_signatures.items()
        }
        other_args = {
            key: tuple(values[i] for i in slots) for key, slots in self._other_signatures.items()
        }
        history = self._history
        if history is not None:
            history.append(np.array(values))
        self.rows_seen += 1
        out = self._out
        for is_talib, update, key, start, width in self._steps:
            if is_talib:
                result = update(talib_args[key])
            else:
                result = update(other_args[key], history)
            if width == 1:
                out[start] = result[0] if isinstance(result, tuple) else result
            else:
                out[start : start + width] = result

    def prime(self, frame: pd.DataFrame) -> None:
        """Absorb history rows in bulk: the same state as update() on each, much faster."""
        if len(frame) == 0:
            return
        data = input_arrays(frame, self._inputs)
        filled: dict[str, np.ndarray] = {}
        for slot, column in enumerate(self.plan.talib_inputs):
            series = data[column]
            if math.isnan(series[0]) and not math.isnan(self._last_valid[slot]):
                series = series.copy()
                series[0] = self._last_valid[slot]  # continue the fill across the seam
            filled[column] = forward_fill(series)
            if not math.isnan(filled[column][-1]):
                self._last_valid[slot] = float(filled[column][-1])
        for feature, streamer in zip(
            (f for f in self.plan.features if isinstance(f, TalibFeature)),
            self._talib_streamers,
            strict=True,
        ):
            streamer.prime([filled[column] for column in feature.inputs])
        if self._history is not None:
            self._history.extend(np.vstack([data[column] for column in self._inputs]))
        self.rows_seen += len(frame)
        self._out[:] = np.nan
