"""Rolling statistics over windows of rows: moments, trend, shape of the window.

For a window x_0..x_{n-1} (x_{n-1} is the current row) of a transformed column, with
mean m = sum(x) / n and deviations d_i = x_i - m, where deviations no larger than 1e-12 times
the window's largest |x| count as 0 (they are rounding noise, e.g. in a flat window):

* mean                   m
* std                    sqrt(m2), m_k = sum(d^k) / n (population moments, ddof = 0)
* skew                   m3 / m2^1.5            (NaN when m2 == 0)
* kurt                   m4 / m2^2 - 3 (excess) (NaN when m2 == 0)
* slope                  least-squares slope of x against i = 0..n-1, per row
* area_above_mean        sum(max(d_i, 0)) / n   (equals the area below; = half the mean
                         absolute deviation)
* argmax_pos             index of the first maximum (ties within the noise tolerance go to
                         the oldest) / (n - 1): 0 = oldest row, 1 = current row
* longest_run_below_mean the longest run of consecutive rows with d_i < 0, in rows

A window holding a NaN gives NaN for every statistic. Transforms: `level` (x), `diff`
(x_t - x_{t-1}), `log_return` (ln(x_t / x_{t-1})).

Batch and streaming run the same vectorised `window_stats` on (rows, n) arrays - batch on
chunks of a sliding-window view, streaming on the single current window - so both apply the
same floating-point operations to the same values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

STATS = (
    "mean",
    "std",
    "skew",
    "kurt",
    "slope",
    "area_above_mean",
    "argmax_pos",
    "longest_run_below_mean",
)
TRANSFORM_TAGS = {"level": "", "diff": "_diff", "log_return": "_logret"}
NOISE_RELATIVE = 1e-12
_CHUNK_ROWS = 16_384


def transform(values: np.ndarray, kind: str) -> np.ndarray:
    """Apply a pointwise transform; the first element of diff / log_return is NaN."""
    if kind == "level":
        return values
    out = np.empty_like(values)
    out[:1] = np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "diff":
            np.subtract(values[1:], values[:-1], out=out[1:])
        else:
            np.log(values[1:] / values[:-1], out=out[1:])
    return out


@lru_cache(maxsize=64)
def _centred_index(n: int) -> tuple[np.ndarray, float]:
    t = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    t.flags.writeable = False
    return t, float(np.add.reduce(t * t))


def window_stats(windows: np.ndarray, stats: tuple[str, ...]) -> list[np.ndarray]:
    """Compute the statistics of each row of a (rows, n) array, in `stats` order."""
    n = windows.shape[1]
    add = np.add.reduce
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = add(windows, axis=1) / n
        dev = windows - mean[:, None]
        noise = NOISE_RELATIVE * np.maximum.reduce(np.abs(windows), axis=1)
        dev[np.abs(dev) <= noise[:, None]] = 0.0
        square = dev * dev
        m2 = add(square, axis=1) / n
        out: list[np.ndarray] = []
        for name in stats:
            # A flat window has every deviation exactly 0, so skew and kurt are 0/0 = NaN.
            if name == "mean":
                value = mean.copy()
            elif name == "std":
                value = np.sqrt(m2)
            elif name == "skew":
                value = (add(square * dev, axis=1) / n) / (m2 * np.sqrt(m2))
            elif name == "kurt":
                value = (add(square * square, axis=1) / n) / (m2 * m2) - 3.0
            elif name == "slope":
                t, denominator = _centred_index(n)
                value = add(dev * t, axis=1) / denominator
            elif name == "area_above_mean":
                value = add(np.maximum(dev, 0.0), axis=1) / n
            elif name == "argmax_pos":
                top = np.maximum.reduce(dev, axis=1)
                value = np.argmax(dev >= (top - noise)[:, None], axis=1) / float(n - 1)
            elif name == "longest_run_below_mean":
                below = dev < 0.0
                count = np.cumsum(below, axis=1)
                reset = np.maximum.accumulate(np.where(below, 0, count), axis=1)
                value = np.maximum.reduce(count - reset, axis=1).astype(np.float64)
            else:
                raise ValueError(f"unknown statistic {name!r}")
            out.append(value)
        has_nan = np.isnan(mean)
        if has_nan.any():
            for value in out:
                value[has_nan] = np.nan
    return out


@dataclass(frozen=True, slots=True)
class StatsFeature:
    """Compiled stats generator: columns x windows x statistics of one transform."""

    columns_in: tuple[str, ...]
    transform: str
    windows: tuple[int, ...]
    stats: tuple[str, ...]
    columns: tuple[str, ...]

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.columns_in

    @property
    def _shift(self) -> int:
        return 0 if self.transform == "level" else 1

    @property
    def lookback(self) -> int:
        return max(self.windows) - 1 + self._shift

    @property
    def history(self) -> int:
        return self.lookback + 1

    @property
    def column_lookbacks(self) -> tuple[int, ...]:
        return tuple(
            window - 1 + self._shift
            for _ in self.columns_in
            for window in self.windows
            for _ in self.stats
        )

    def batch(self, data: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Compute every column over whole input arrays (chunked to bound memory)."""
        out: list[np.ndarray] = []
        for column in self.columns_in:
            series = transform(np.asarray(data[column], dtype=np.float64), self.transform)
            size = series.size
            for window in self.windows:
                results = [np.full(size, np.nan) for _ in self.stats]
                if size >= window:
                    view = sliding_window_view(series, window)
                    for start in range(0, view.shape[0], _CHUNK_ROWS):
                        chunk = view[start : start + _CHUNK_ROWS]
                        stop = start + chunk.shape[0] + window - 1
                        for result, value in zip(
                            results, window_stats(chunk, self.stats), strict=True
                        ):
                            result[start + window - 1 : stop] = value
                out.extend(results)
        return out

    def streamer(self) -> StatsStreamer:
        return StatsStreamer(self)


class StatsStreamer:
    """Evaluate the statistics of the current windows from the input history."""

    __slots__ = ("_feature", "_nan")

    def __init__(self, feature: StatsFeature) -> None:
        self._feature = feature
        self._nan = (np.nan,) * len(feature.columns)

    def update(self, args: tuple[float, ...], history: object) -> tuple[float, ...]:
        """Compute the current row's statistics from the last rows of each input column."""
        f = self._feature
        if history.count < f.lookback + 1:  # type: ignore[attr-defined]
            return self._nan
        shift = f._shift
        out: list[float] = []
        for column in f.columns_in:
            raw = history.window(column, f.lookback + 1)  # type: ignore[attr-defined]
            series = transform(raw, f.transform)[shift:]
            for window in f.windows:
                values = window_stats(series[series.size - window :][None, :], f.stats)
                out.extend(float(v[0]) for v in values)
        return tuple(out)


def build_stats_feature(
    columns: tuple[str, ...], kind: str, windows: tuple[int, ...], stats: tuple[str, ...]
) -> StatsFeature:
    """Resolve a stats generator into its feature and column names."""
    tag = TRANSFORM_TAGS[kind]
    names = tuple(
        f"{column}{tag}_{stat}_{window}"
        for column in columns
        for window in windows
        for stat in stats
    )
    return StatsFeature(
        columns_in=tuple(columns),
        transform=kind,
        windows=tuple(windows),
        stats=tuple(stats),
        columns=names,
    )
