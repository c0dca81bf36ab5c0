"""Parity proof: stream a frame row by row, batch it whole, compare every value after warm-up."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from strategy.features.batch import compute_batch, input_arrays
from strategy.features.plan import FeaturePlan, as_plan
from strategy.features.schema import infer_frequency
from strategy.features.spec import FeaturesConfig, FeatureSetSpec
from strategy.features.streaming import StreamingFeatures

FeatureSetLike = FeatureSetSpec | FeaturePlan | FeaturesConfig


@dataclass(frozen=True, slots=True)
class ColumnMismatch:
    """One column whose streaming values differ from batch beyond the tolerance."""

    column: str
    count: int  # mismatching rows
    first_row: int  # position in the frame of the first one
    stream_value: float
    batch_value: float
    max_rel_error: float


@dataclass(frozen=True, slots=True)
class ParityReport:
    """What check_parity compared and what it found."""

    feature_set: str
    hash: str
    rtol: float
    atol: float
    rows: int
    warmup_rows: int
    first_warm_row: int | None  # position of the first row streaming returned a vector for
    rows_compared: int
    columns_compared: int
    values_compared: int
    max_rel_error: float
    worst_column: str | None
    mismatches: tuple[ColumnMismatch, ...]

    @property
    def ok(self) -> bool:
        return self.rows_compared > 0 and not self.mismatches

    def summary(self) -> str:
        """Render the report as a few human-readable lines."""
        head = "PARITY OK" if self.ok else "PARITY FAILED"
        lines = [
            (
                f"{head}: feature set {self.feature_set!r} ({self.hash[:12]}), "
                f"{self.columns_compared} columns x {self.rows_compared} rows = "
                f"{self.values_compared} values compared after warm-up "
                f"({self.warmup_rows} rows; first warm row {self.first_warm_row}) "
                f"of {self.rows} rows"
            ),
            f"max relative error {self.max_rel_error:.3g}"
            + (f" ({self.worst_column})" if self.worst_column else "")
            + f", tolerance rtol={self.rtol:g} atol={self.atol:g}",
        ]
        if self.rows_compared == 0:
            lines.append("no row was compared: the frame is shorter than the warm-up")
        for m in self.mismatches:
            lines.append(
                f"  {m.column}: {m.count} rows differ, first at row {m.first_row} "
                f"(stream {m.stream_value!r}, batch {m.batch_value!r}), "
                f"max rel error {m.max_rel_error:.3g}"
            )
        return "\n".join(lines)


def select_feature_set(feature_set: FeatureSetLike, frame: pd.DataFrame) -> FeaturePlan:
    """Pick the plan to run on `frame`: a whole config gives the set of the frame's frequency."""
    if isinstance(feature_set, FeaturesConfig):
        return as_plan(feature_set.get(infer_frequency(frame.columns)))
    return as_plan(feature_set)


def relative_errors(stream: np.ndarray, batch: np.ndarray) -> np.ndarray:
    """|s - b| / max(|s|, |b|); 0 where equal (NaN == NaN included), inf for NaN vs number."""
    with np.errstate(invalid="ignore", divide="ignore"):
        same = (stream == batch) | (np.isnan(stream) & np.isnan(batch))
        scale = np.maximum(np.abs(stream), np.abs(batch))
        error = np.abs(stream - batch) / scale
    error = np.where(np.isnan(error), np.inf, error)
    return np.where(same, 0.0, error)


def check_parity(
    frame: pd.DataFrame,
    feature_set: FeatureSetLike,
    rtol: float = 1e-9,
    *,
    atol: float = 0.0,
    progress: bool = False,
) -> ParityReport:
    """Run streaming row by row and batch on `frame`; compare every value after warm-up."""
    plan = select_feature_set(feature_set, frame)
    batch = compute_batch(frame, plan).to_numpy()
    streaming = StreamingFeatures(plan)
    data = input_arrays(frame, plan.inputs)
    names = plan.inputs
    vectors: list[np.ndarray] = []
    first_warm: int | None = None
    rows = zip(*(data[name].tolist() for name in names), strict=True)
    for position, values in enumerate(tqdm(rows, total=len(frame), disable=not progress)):
        vector = streaming.update(dict(zip(names, values, strict=True)))
        if vector is not None:
            if first_warm is None:
                first_warm = position
            vectors.append(vector)
    return _compare(plan, batch, vectors, first_warm, len(frame), rtol, atol)


def _compare(
    plan: FeaturePlan,
    batch: np.ndarray,
    vectors: list[np.ndarray],
    first_warm: int | None,
    n_rows: int,
    rtol: float,
    atol: float,
) -> ParityReport:
    mismatches: list[ColumnMismatch] = []
    max_error, worst = 0.0, None
    if first_warm is not None:
        stream = np.vstack(vectors)
        expected = batch[first_warm:]
        errors = relative_errors(stream, expected)
        with np.errstate(invalid="ignore"):
            absolute = np.abs(stream - expected)
        bad = (errors > rtol) & ~(absolute <= atol)
        column_max = errors.max(axis=0)
        if column_max.size and column_max.max() > 0:
            worst_index = int(np.argmax(column_max))
            max_error, worst = float(column_max[worst_index]), plan.columns[worst_index]
        for j in np.flatnonzero(bad.any(axis=0)):
            i = int(np.argmax(bad[:, j]))
            mismatches.append(
                ColumnMismatch(
                    column=plan.columns[j],
                    count=int(bad[:, j].sum()),
                    first_row=first_warm + i,
                    stream_value=float(stream[i, j]),
                    batch_value=float(expected[i, j]),
                    max_rel_error=float(column_max[j]),
                )
            )
    rows_compared = 0 if first_warm is None else n_rows - first_warm
    return ParityReport(
        feature_set=plan.spec.label,
        hash=plan.hash,
        rtol=rtol,
        atol=atol,
        rows=n_rows,
        warmup_rows=plan.warmup_rows,
        first_warm_row=first_warm,
        rows_compared=rows_compared,
        columns_compared=len(plan.columns),
        values_compared=rows_compared * len(plan.columns),
        max_rel_error=max_error if math.isfinite(max_error) else math.inf,
        worst_column=worst,
        mismatches=tuple(mismatches),
    )


def read_frame(source: pd.DataFrame | str | Path) -> pd.DataFrame:
    """Return a frame as is, or read it from Parquet (or CSV by extension)."""
    if isinstance(source, pd.DataFrame):
        return source
    path = Path(source)
    if path.suffix in (".csv", ".gz") or path.name.endswith(".csv.gz"):
        return pd.read_csv(path)
    return pd.read_parquet(path)


def run_parity_command(
    source: pd.DataFrame | str | Path,
    feature_set: FeatureSetLike,
    *,
    rtol: float = 1e-9,
    atol: float = 0.0,
    progress: bool = True,
    out: TextIO | None = None,
    echo: Callable[[str], None] | None = None,
) -> ParityReport:
    """`tickloop parity`: check streaming == batch on a rows/candles frame; print the report."""
    frame = read_frame(source)
    report = check_parity(frame, feature_set, rtol, atol=atol, progress=progress)
    text = report.summary()
    if echo is not None:
        echo(text)
    else:
        print(text, file=out or sys.stdout)
    return report
