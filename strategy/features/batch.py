"""Batch execution: a whole frame of rows or candles in, a frame of features out."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from strategy.features.plan import FeaturePlan, as_plan
from strategy.features.spec import FeatureSetSpec
from strategy.features.ta import TalibFeature, forward_fill


class MissingColumnsError(ValueError):
    """The input frame lacks columns the feature set reads."""


def input_arrays(frame: pd.DataFrame, columns: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Return the named columns as float64 arrays; MissingColumnsError lists absent ones."""
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise MissingColumnsError(
            f"the frame has no column(s) {missing} that the feature set reads "
            f"(it has: {', '.join(map(str, frame.columns))})"
        )
    return {column: frame[column].to_numpy(dtype=np.float64, na_value=np.nan) for column in columns}


def compute_batch(
    frame: pd.DataFrame,
    feature_set: FeatureSetSpec | FeaturePlan,
    *,
    progress: bool = False,
) -> pd.DataFrame:
    """Compute every feature of the set for every row of `frame` (same index, float64)."""
    plan = as_plan(feature_set)
    data = input_arrays(frame, plan.inputs)
    filled: Mapping[str, np.ndarray] = {
        column: forward_fill(data[column]) for column in plan.talib_inputs
    }
    columns: dict[str, np.ndarray] = {}
    features = tqdm(plan.features, desc="features", unit="fn", disable=not progress, leave=False)
    for feature in features:
        arrays = feature.batch(filled if isinstance(feature, TalibFeature) else data)
        columns.update(zip(feature.columns, arrays, strict=True))
    return pd.DataFrame(columns, index=frame.index, columns=list(plan.columns))
