"""The `tickloop features` and `tickloop parity` command bodies, on Parquet files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from strategy.features import (
    FeaturesConfig,
    MissingColumnsError,
    compile_feature_set,
    compute_batch,
    infer_frequency,
    read_features_metadata,
    run_features_command,
    run_parity_command,
)


def test_features_command_writes_ts_features_and_metadata(
    tmp_path: Path, fil_month: pd.DataFrame
) -> None:
    candles = fil_month.iloc[:500]
    source = tmp_path / "candles.parquet"
    candles.to_parquet(source)
    config = FeaturesConfig()
    written = run_features_command(
        source, tmp_path / "out" / "features.parquet", config, progress=False
    )
    plan = compile_feature_set(config.get("minute"))
    assert (written.rows, written.columns, written.hash) == (500, len(plan.columns), plan.hash)
    out = pd.read_parquet(written.path)
    assert list(out.columns) == ["ts", *plan.columns]
    np.testing.assert_array_equal(out["ts"], candles["ts"])
    expected = compute_batch(candles, plan)
    np.testing.assert_array_equal(out[list(plan.columns)].to_numpy(), expected.to_numpy())
    meta = read_features_metadata(written.path)
    assert meta["hash"] == plan.hash and meta["warmup_rows"] == plan.warmup_rows
    assert meta["frequency"] == "minute" and meta["columns"] == list(plan.columns)


def test_parity_command_reports_on_a_file(tmp_path: Path, rows_synthetic: pd.DataFrame) -> None:
    source = tmp_path / "rows.parquet"
    rows_synthetic.iloc[:500].to_parquet(source)
    out = io.StringIO()
    report = run_parity_command(source, FeaturesConfig(), progress=False, out=out)
    assert report.ok and report.feature_set == "second"
    assert out.getvalue().startswith("PARITY OK: feature set 'second'")


def test_frequency_inference_and_missing_columns(
    rows_synthetic: pd.DataFrame, fil_month: pd.DataFrame
) -> None:
    assert infer_frequency(rows_synthetic.columns) == "second"
    assert infer_frequency(fil_month.columns) == "minute"
    with pytest.raises(ValueError, match="cannot tell the frame's frequency"):
        infer_frequency(["ts", "close"])
    with pytest.raises(MissingColumnsError, match=r"no column\(s\) \['trades'\]"):
        compute_batch(fil_month.drop(columns=["trades"]), FeaturesConfig().get("minute"))
