"""`tickloop features`: Parquet rows/candles in, Parquet features out (with the set's metadata)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from strategy.features.batch import compute_batch
from strategy.features.parity import FeatureSetLike, read_frame, select_feature_set

METADATA_KEY = b"tickloop.features"


@dataclass(frozen=True, slots=True)
class FeaturesWritten:
    """What run_features_command wrote."""

    path: Path
    rows: int
    columns: int
    feature_set: str
    hash: str
    warmup_rows: int


def run_features_command(
    input_path: str | Path,
    output_path: str | Path,
    feature_set: FeatureSetLike,
    progress: bool = True,
) -> FeaturesWritten:
    """Compute a feature set over a Parquet file of rows or candles; write features to Parquet.

    The output keeps `ts` (when the input has it) followed by the feature columns, and stores
    the feature set's metadata (hash, warm-up rows, columns, versions, definition) as JSON under
    the Parquet schema key `tickloop.features`. Rows before warm-up are written too (NaN where
    undefined): drop the first `warmup_rows` rows before training.
    """
    frame = read_frame(Path(input_path))
    plan = select_feature_set(feature_set, frame)
    features = compute_batch(frame, plan, progress=progress)
    if "ts" in frame.columns:
        features.insert(0, "ts", frame["ts"].to_numpy())
    table = pa.Table.from_pandas(features.reset_index(drop=True), preserve_index=False)
    metadata = dict(table.schema.metadata or {})
    metadata[METADATA_KEY] = json.dumps(plan.metadata()).encode()
    output = Path(output_path)
    output.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.replace_schema_metadata(metadata), output)
    return FeaturesWritten(
        path=output,
        rows=len(features),
        columns=len(plan.columns),
        feature_set=plan.spec.label,
        hash=plan.hash,
        warmup_rows=plan.warmup_rows,
    )


def read_features_metadata(path: str | Path) -> dict:
    """Return the feature-set metadata stored in a features Parquet file."""
    schema = pq.read_schema(Path(path))
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise KeyError(f"{path} carries no {METADATA_KEY.decode()} metadata")
    return json.loads(raw)


def features_frame(path: str | Path) -> pd.DataFrame:
    """Read a features Parquet file written by run_features_command."""
    return pd.read_parquet(Path(path))
