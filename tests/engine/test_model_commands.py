"""The research commands end to end through the CLI, on real klines: import -> train -> models -> promote."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

CONFIG = {
    "logging": {"console": "off", "file": None},
    "market": {"type": "usdm", "symbols": ["FILUSDT"]},
    "features": {"sets": [{
        "name": "small", "frequency": "minute",
        "generators": [
            {"kind": "talib", "name": "RSI", "windows": [14]},
            {"kind": "talib", "name": "NATR"},
            {"kind": "stats", "columns": ["close"], "windows": [15], "stats": ["std", "slope"]},
        ],
    }]},
    "models": {"dir": "models", "train": {"lightgbm": {"num_boost_round": 20, "num_leaves": 7},
                                          "walk_forward": {"retrain_days": 3, "min_train_days": 10}}},
}


def tickloop(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args, "-c", str(cwd / "config.yaml")],
                          capture_output=True, text=True, timeout=600, cwd=cwd)


@pytest.mark.slow
def test_import_train_list_promote(shared_data: Path, tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    archive = shared_data / "klines" / "usdm-1m" / "FILUSDT-1m-2023-08.csv.gz"
    proc = tickloop("import-archive", str(archive), "--symbol", "FILUSDT", "--market", "usdm", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "imported 44640 1m bars of FILUSDT" in proc.stdout  # 31 days x 1440 minutes
    label = "up_1pct_60"
    proc = tickloop("train", "--symbol", "FILUSDT", "--label", label, "--set", "small", "--walk-forward",
                    cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_id = proc.stdout.split()[1].rstrip(":")
    assert "val_roc_auc" in proc.stdout
    proc = tickloop("models", "--symbol", "FILUSDT", cwd=tmp_path)
    assert proc.returncode == 0 and run_id in proc.stdout, proc.stdout + proc.stderr
    proc = tickloop("promote", run_id, "--set", "small", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    installed = list((tmp_path / "models" / "FILUSDT").rglob("manifest.json"))
    assert installed, list((tmp_path / "models").rglob("*"))
