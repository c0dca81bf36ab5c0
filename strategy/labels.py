"""Label generators (the `labels:` config section): targets computed from future bars, batch only.

A label is a property of a bar that depends on the bars *after* it, so it is only ever computed
in batch over history and never reaches the feature vector (the dataset builder keeps features
and labels in separate arrays; tests/strategy/test_labels.py proves features ignore the future).
Values are float64: 1.0 / 0.0, NaN where the future needed to decide is not in the frame (the
last bars, or a window that holds a missing bar).

Generators (all percentages are relative to the bar's close):

* `forward`: did the high (`direction: up`) of the next `horizon` bars reach `close * (1 + X%)`,
  or the low (`down`) reach `close * (1 - X%)`?
* `highlow2`: a move of X % within `horizon` bars that is not preceded by an adverse move of
  `tolerance * X` % (a take-profit hit before the stop). A bar that touches both counts as the
  adverse move first: one-minute bars do not tell the order, so the label stays conservative.
* `topbot2`: swing tops (bottoms) of `column` that rise above (fall below) the series by at least
  `level_pct` on both sides; every bar within `tolerance * level_pct` % of the extremum, contiguous
  with it, is labelled 1. Bars after the last confirmed extremum are NaN (not yet decided).

Each label also defines the trade it stands for (`trade_rule()`): side, take-profit, stop and
holding horizon, which training uses to simulate profit net of fees when choosing a threshold.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, WrapValidator, model_validator

Percent = Annotated[float, Field(gt=0, lt=100)]
_CHUNK_ROWS = 65_536  # rows per block when scanning forward windows (bounded memory)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True, slots=True)
class TradeRule:
    """The trade a label stands for: enter at the bar's close, leave at TP, stop or timeout."""

    side: int  # +1 long (a rise label), -1 short (a fall label)
    take_profit_pct: float
    stop_loss_pct: float | None
    horizon_bars: int


class ForwardLabel(_Spec):
    """1 when the next `horizon` bars reach `threshold_pct` above (below) the close."""

    kind: Literal["forward"] = "forward"
    name: str | None = None
    direction: Literal["up", "down"] = "up"
    horizon: PositiveInt = 60
    threshold_pct: Percent = 1.0

    @property
    def label(self) -> str:
        return self.name or f"{self.direction}_{self.threshold_pct:g}pct_{self.horizon}"

    @property
    def side(self) -> int:
        return 1 if self.direction == "up" else -1

    @property
    def horizon_rows(self) -> int:
        return self.horizon

    def trade_rule(self) -> TradeRule:
        return TradeRule(self.side, self.threshold_pct, None, self.horizon)

    def compute(self, frame: pd.DataFrame) -> np.ndarray:
        close, high, low = _ohlc(frame)
        hit, _, decided = first_crossings(
            close, high, low, self.horizon, self.side, self.threshold_pct, None
        )
        return np.where(decided, (hit >= 0).astype(np.float64), np.nan)


class HighLow2Label(_Spec):
    """1 when a move of `threshold_pct` comes within `horizon` bars before an adverse one."""

    kind: Literal["highlow2"] = "highlow2"
    name: str | None = None
    direction: Literal["up", "down"] = "up"
    horizon: PositiveInt = 60
    threshold_pct: Percent = 1.0
    tolerance: Annotated[float, Field(gt=0, le=10)] = 0.5  # adverse move, fraction of threshold

    @property
    def label(self) -> str:
        return self.name or (
            f"hl2_{self.direction}_{self.threshold_pct:g}pct_{self.horizon}_tol{self.tolerance:g}"
        )

    @property
    def side(self) -> int:
        return 1 if self.direction == "up" else -1

    @property
    def horizon_rows(self) -> int:
        return self.horizon

    def trade_rule(self) -> TradeRule:
        stop = self.threshold_pct * self.tolerance
        return TradeRule(self.side, self.threshold_pct, stop, self.horizon)

    def compute(self, frame: pd.DataFrame) -> np.ndarray:
        close, high, low = _ohlc(frame)
        stop = self.threshold_pct * self.tolerance
        hit, adverse, decided = first_crossings(
            close, high, low, self.horizon, self.side, self.threshold_pct, stop
        )
        won = (hit >= 0) & ((adverse < 0) | (hit < adverse))
        return np.where(decided, won.astype(np.float64), np.nan)


class TopBot2Label(_Spec):
    """1 on bars within a tolerance band around swing tops (or bottoms) of at least a level."""

    kind: Literal["topbot2"] = "topbot2"
    name: str | None = None
    function: Literal["top", "bot"] = "bot"
    column: str = "close"
    level_pct: Percent = 2.0
    tolerance: Annotated[float, Field(gt=0, le=1)] = 0.25  # band, fraction of the level
    horizon: PositiveInt = 240  # bars a trade on it is held at most; also the purge gap

    @property
    def label(self) -> str:
        return self.name or f"{self.function}_{self.level_pct:g}pct_tol{self.tolerance:g}"

    @property
    def side(self) -> int:
        return 1 if self.function == "bot" else -1  # buy bottoms, sell tops

    @property
    def horizon_rows(self) -> int:
        return self.horizon

    def trade_rule(self) -> TradeRule:
        return TradeRule(self.side, self.level_pct, self.level_pct, self.horizon)

    def compute(self, frame: pd.DataFrame) -> np.ndarray:
        values = frame[self.column].to_numpy(dtype=np.float64)
        return swing_labels(values, self.function == "top", self.level_pct, self.tolerance)


LabelSpec = ForwardLabel | HighLow2Label | TopBot2Label
_BY_KIND: dict[str, type[_Spec]] = {
    "forward": ForwardLabel,
    "highlow2": HighLow2Label,
    "topbot2": TopBot2Label,
}


def _dispatch_on_kind(value: Any, handler: Any) -> Any:
    # By hand, like the features section, so error paths read labels.generators[1].horizon.
    if isinstance(value, tuple(_BY_KIND.values())):
        return value
    if not isinstance(value, dict):
        raise ValueError("a label is a mapping with a `kind` (forward, highlow2, topbot2)")  # noqa: TRY004 - pydantic reports ValueError
    kind = value.get("kind", "forward")
    if not isinstance(kind, str) or kind not in _BY_KIND:  # a list or a mapping is unhashable
        raise ValueError(f"{kind!r} is not a label kind (forward, highlow2, topbot2)")
    return _BY_KIND[kind].model_validate(value)


def parse_label(value: dict[str, Any]) -> LabelSpec:
    """Validate one label generator given as a mapping (its `kind` picks the model)."""
    return _dispatch_on_kind(value, None)


LabelSpecField = Annotated[LabelSpec, WrapValidator(_dispatch_on_kind)]


def default_labels() -> tuple[LabelSpec, ...]:
    """Return the labels a new user gets: a 1 % rise and a 1 % fall within an hour."""
    return (ForwardLabel(direction="up"), ForwardLabel(direction="down"))


class LabelsConfig(_Spec):
    """The `labels:` section: the label generators training can target, by name."""

    generators: tuple[LabelSpecField, ...] = Field(default_factory=default_labels)

    @model_validator(mode="after")
    def _unique_names(self) -> LabelsConfig:
        names = [g.label for g in self.generators]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"label names must be unique; repeated: {', '.join(duplicates)}")
        return self

    def get(self, name: str) -> LabelSpec:
        """Return the label generator with this name."""
        for generator in self.generators:
            if generator.label == name:
                return generator
        known = ", ".join(g.label for g in self.generators)
        raise KeyError(f"no label named {name!r} (labels: {known})")


def compute_labels(frame: pd.DataFrame, labels: LabelsConfig | Iterable[LabelSpec]) -> pd.DataFrame:
    """Compute every label over a frame of bars (same index; float64 1/0/NaN)."""
    specs = labels.generators if isinstance(labels, LabelsConfig) else tuple(labels)
    return pd.DataFrame({s.label: s.compute(frame) for s in specs}, index=frame.index)


def _ohlc(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(frame[c].to_numpy(dtype=np.float64) for c in ("close", "high", "low"))  # type: ignore[return-value]


def first_crossings(
    close: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    horizon: int,
    side: int,
    target_pct: float,
    adverse_pct: float | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return, per bar t, the first offset in 1..horizon reaching the target and the adverse level.

    The target is `close[t] * (1 + side * target_pct / 100)`, reached by the high (side +1) or the
    low (side -1); the adverse level lies `adverse_pct` the other way. Offsets are -1 when not
    reached. `decided` is False where the window runs past the frame or holds a missing bar.
    """
    n = len(close)
    hit = np.full(n, -1, dtype=np.int64)
    adverse = np.full(n, -1, dtype=np.int64)
    decided = np.zeros(n, dtype=bool)
    rows = n - horizon
    if rows <= 0:
        return hit, adverse, decided
    favourable, unfavourable = (high, low) if side > 0 else (low, high)
    for start in range(0, rows, _CHUNK_ROWS):
        stop = min(start + _CHUNK_ROWS, rows)
        base = close[start:stop, None]
        fav = _windows(favourable, start, stop, horizon)
        unf = _windows(unfavourable, start, stop, horizon)
        target = base * (1.0 + side * target_pct / 100.0)
        reached = fav >= target if side > 0 else fav <= target
        hit[start:stop] = _first_true(reached)
        if adverse_pct is not None:
            level = base * (1.0 - side * adverse_pct / 100.0)
            crossed = unf <= level if side > 0 else unf >= level
            adverse[start:stop] = _first_true(crossed)
        complete = ~(np.isnan(fav).any(axis=1) | np.isnan(unf).any(axis=1))
        decided[start:stop] = complete & ~np.isnan(close[start:stop])
    return hit, adverse, decided


def _windows(values: np.ndarray, start: int, stop: int, horizon: int) -> np.ndarray:
    # Row t of the result holds values[t+1 .. t+horizon].
    view = np.lib.stride_tricks.sliding_window_view(values[start + 1 : stop + horizon], horizon)
    return view


def _first_true(matrix: np.ndarray) -> np.ndarray:
    first = matrix.argmax(axis=1) + 1
    return np.where(matrix.any(axis=1), first, -1)


def swing_labels(
    values: np.ndarray, is_top: bool, level_pct: float, tolerance: float
) -> np.ndarray:
    """Label the tolerance bands of swing extrema separated by at least `level_pct` (see module doc)."""
    n = len(values)
    out = np.zeros(n, dtype=np.float64)
    if n == 0:
        return out
    x = values if is_top else -values  # a bottom is a top of the negated series
    level = level_pct / 100.0
    band = level * tolerance
    confirmed_until = -1
    intervals = [(0, n)]
    while intervals:
        lo, hi = intervals.pop()
        if hi - lo < 3:
            continue
        segment = x[lo:hi]
        if np.isnan(segment).all():
            continue
        m = lo + int(np.nanargmax(segment))
        peak = x[m]
        drop = _below(peak, level)
        left = _last_index_below(x, lo, m, drop)
        right = _first_index_below(x, m + 1, hi, drop)
        if left is not None and right is not None:
            tol = _below(peak, band)
            left_band = _last_index_below(x, lo, m, tol)
            right_band = _first_index_below(x, m + 1, hi, tol)
            first = (left_band if left_band is not None else lo - 1) + 1
            last = right_band if right_band is not None else hi
            out[first:last] = 1.0
            confirmed_until = max(confirmed_until, right)
        if left is not None:
            intervals.append((lo, left + 1))
        if right is not None:
            intervals.append((right, hi))
    out[confirmed_until + 1 :] = np.nan
    out[np.isnan(values)] = np.nan
    return out


def _below(peak: float, fraction: float) -> float:
    # `fraction` of the price below the extremum, in the (possibly negated) series.
    return peak - fraction * abs(peak)


def _last_index_below(x: np.ndarray, lo: int, m: int, level: float) -> int | None:
    below = np.flatnonzero(x[lo:m] < level)
    return lo + int(below[-1]) if below.size else None


def _first_index_below(x: np.ndarray, lo: int, hi: int, level: float) -> int | None:
    below = np.flatnonzero(x[lo:hi] < level)
    return lo + int(below[0]) if below.size else None
